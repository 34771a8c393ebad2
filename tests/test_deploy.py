"""deploy/: the systemd unit (systemd-analyze verify, and the notify/watchdog contract kept by a
real `sep meter` process), the udev rules (against the public usb.ids list), sysusers."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from required_tools import missing

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
USB_IDS = Path("/usr/share/misc/usb.ids")


def need(tool_present: bool, what: str) -> None:
    """A missing tool fails in CI (where .ci/run installs it) and skips elsewhere."""
    if not tool_present:
        missing(what)


def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key, value))
    return sections


def test_systemd_analyze_verifies_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    need(analyze is not None, "systemd-analyze (Debian package systemd)")
    # the unit as installed, with ExecStart pointing at this checkout's `sep`
    unit = tmp_path / "sep.service"
    unit.write_text((DEPLOY / "sep.service").read_text().replace(
        "/usr/local/bin/sep", str(BIN / "sep")))
    proc = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # no unknown keys, no warnings
    # and it can fail: a typo in a key is reported
    unit.write_text(unit.read_text().replace("WatchdogSec=", "WatchDogSec="))
    typo = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=120)
    assert "WatchDogSec" in typo.stderr


def test_the_unit_is_a_notify_service_with_a_watchdog_a_user_and_hardening():
    s = dict(unit_entries(DEPLOY / "sep.service")["Service"])
    assert s["Type"] == "notify" and s["WatchdogSec"] == "60s"
    assert s["User"] == "sep" and s["StateDirectory"] == "sep"
    assert "--config /etc/sep/sep.toml" in s["ExecStart"] and "json" in s["ExecStart"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "DevicePolicy": "closed",
                       "CapabilityBoundingSet": ""}.items():
        assert s[key] == value, key
    users = (DEPLOY / "sep.sysusers").read_text().splitlines()
    assert re.search(r"^u sep - .+ /var/lib/sep$", "\n".join(users), re.M)
    assert "m sep dialout" in users


def test_the_meter_keeps_the_units_notify_and_watchdog_contract(tmp_path):
    """What systemd does for Type=notify + WatchdogSec, done here: a notify socket and
    WATCHDOG_USEC; the real meter process must say READY=1, ping WATCHDOG=1, and STOPPING=1."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.5)
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}
        proc = subprocess.Popen([str(BIN / "sep"), "meter", "--ephemeral", "--duration", "4"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        got: list[tuple[float, str]] = []
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                got.append((time.monotonic(), sock.recv(256).decode()))
            except TimeoutError:
                pass
        proc.wait(30)
    messages = [m for _t, m in got]
    assert proc.returncode == 0
    assert messages[0] == "READY=1"
    pings = [t for t, m in got if m == "WATCHDOG=1"]
    assert len(pings) >= 4  # every WATCHDOG_USEC/2 = 0.5 s over a 4 s run
    assert messages[-1] == "STOPPING=1"


def usb_ids() -> dict[str, tuple[str, dict[str, str]]]:
    vendors: dict[str, tuple[str, dict[str, str]]] = {}
    vendor = None
    for line in USB_IDS.read_text(encoding="latin-1").splitlines():
        if line.startswith("C "):
            break  # device classes follow
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            vid, name = line.split(None, 1)
            vendor = vid
            vendors[vid] = (name, {})
        elif not line.startswith("\t\t") and vendor is not None:
            pid, name = line.strip().split(None, 1)
            vendors[vendor][1][pid] = name
    return vendors


RULE_KEYS = {"SUBSYSTEM", "ATTRS", "GROUP", "MODE", "ENV", "SYMLINK", "TAG"}


def test_the_udev_rules_are_well_formed_and_name_real_usb_ids():
    need(USB_IDS.exists(), f"{USB_IDS} (Debian package usb.ids)")
    ids = usb_ids()
    text = (DEPLOY / "99-sep-ezsp.rules").read_text().splitlines()
    rules = 0
    for n, line in enumerate(text):
        if not line.strip() or line.startswith("#"):
            continue
        rules += 1
        note = text[n - 1]
        m = re.match(r"# stick: (.+); bridge: (\S+(?: \S+)?) (\S+)$", note)
        assert m, f"line {n + 1}: no 'stick: ...; bridge: VENDOR CHIP' comment"
        fields = {}
        for token in re.split(r",\s*", line):
            tm = re.fullmatch(r'([A-Z_]+)(?:\{(\w+)\})?(==|!=|\+=|=)"([^"]*)"', token)
            assert tm, f"line {n + 1}: bad token {token!r}"
            key, attr, op, value = tm.groups()
            assert key in RULE_KEYS, key
            assert (op in ("==", "!=")) == (key in ("SUBSYSTEM", "ATTRS")), token
            fields[(key, attr)] = value
        assert fields[("SUBSYSTEM", None)] == "tty"
        assert fields[("GROUP", None)] == "dialout" and fields[("MODE", None)] == "0660"
        assert fields[("ENV", "ID_MM_DEVICE_IGNORE")] == "1"
        assert fields[("SYMLINK", None)] == "sep-ezsp" and fields[("TAG", None)] == "systemd"
        vid, pid = fields[("ATTRS", "idVendor")], fields[("ATTRS", "idProduct")]
        vendor, chip = m[2], m[3]
        assert vid in ids, vid
        assert vendor.split()[0] in ids[vid][0], (vid, ids[vid][0], vendor)
        if pid in ids[vid][1]:  # usb.ids does not know every bridge chip (CH9102)
            assert chip in ids[vid][1][pid], (vid, pid, ids[vid][1][pid], chip)
    assert rules >= 4
