"""Campaigns for what the meter reads at start and from its operator: the tariff (TOML file,
JSON document over MQTT, stored copy) and the other loaders (the broker URL, the NCP's
state file, the meter's identity, the A/B slots' boot and meta files, the OTA download's
state, the trust directory).

Documents are mutated where they are valid (``tests/docgen.py``): a key dropped or added,
a value of another kind or at an edge, an array entry duplicated — and, for text formats,
bytes damaged. The oracle:

- each loader raises only its documented error (``TariffError`` naming the key,
  ``BridgeConfigError``, ``KeyMaterialError``/``OSError``, ``ValueError`` naming the file)
  or returns a value it vouches for — never another exception, never a traceback;
- a tariff that loads is one the meter can serve: a Price server with it runs a week of
  ticks and answers every Get* command and a Read Attributes of every attribute with
  frames zigpy reads (the tables hubsim's IHD uses), and the stored form of it
  (``tariff_to_dict``) loads back to the same tariff, so it survives a restart;
- a loader that falls back (boot.json, download.json) falls back to something usable:
  ``choose_boot`` runs, the download state's numbers are numbers.

Default run: a short sample. The campaigns (100,000 documents each)::

    nice -n 15 .venv/bin/python -m pytest -m slow -s -p no:cacheprovider tests/test_campaign_config.py
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import zigpy.types as t
from docgen import json_safe, mutate, odd_value, tariff_documents
from fuzzgen import Campaign, CatchAllObserver
from zigpy.zcl import foundation

from sep.bridge.config import BridgeConfig, BridgeConfigError
from sep.cli.common import tariff_file
from sep.clusters.price import PriceServer
from sep.meter.tariff import Tariff, TariffError, parse_tariff, tariff_from_dict, tariff_to_dict
from sep.zcl.frames import Request
from sep.zcl.price import Price

T0 = 1_780_272_000  # 2026-06-01T00:00:00Z
GC = foundation.GeneralCommand


# -- the tariff -------------------------------------------------------------------------------
def get_requests(tariff: Tariff) -> list[tuple[int, bytes]]:
    """Every Get* a HAN client sends, for this tariff's ids."""
    tid = t.uint32_t(tariff.issuer_tariff_id).serialize()
    since = t.uint32_t(0).serialize() + t.uint32_t(0xFFFFFFFF).serialize()
    return [
        (0x00, b"\x01"), (0x01, t.uint32_t(0).serialize() + b"\x00"),
        (0x03, t.uint32_t(0).serialize() + b"\x04\x00"), (0x04, since + b"\x01"),
        (0x05, since + b"\x01"), (0x06, since + b"\x01\x00"), (0x07, tid), (0x08, tid),
        (0x09, since + b"\x01\x00"), (0x0A, tid), (0x0B, since + b"\x01\x00"),
        (0x10, b""),
    ]


def parse_price_frame(frame: bytes) -> None:
    hdr, rest = foundation.ZCLHeader.deserialize(frame)
    if hdr.frame_control.is_general:
        _args, extra = foundation.GENERAL_COMMANDS[hdr.command_id].schema.deserialize(rest)
    else:
        _args, extra = Price.client_commands[hdr.command_id].schema.deserialize(rest)
    assert not extra, f"trailing bytes in {frame.hex()}"


def serve_tariff(tariff: Tariff) -> None:
    """A Price server with ``tariff`` runs a week and answers everything readably."""
    server = PriceServer(tariff=tariff)
    now = float(T0)
    for hour in range(0, 7 * 24, 13):
        server.tick(now + hour * 3600)
        for frame in server.take_outbox():
            parse_price_frame(frame)
    now += 7 * 24 * 3600
    requests = [(False, c, p) for c, p in get_requests(tariff)]
    ids = b"".join(t.uint16_t(a).serialize() for a in server.attr_ids())
    requests.append((True, GC.Read_Attributes, ids))
    for general, command, payload in requests:
        hdr = (foundation.ZCLHeader.general if general else foundation.ZCLHeader.cluster)(
            7, command)
        req = Request(src_nwk=0x3B3B, src_ep=1, dst_ep=1, profile_id=0x0109, cluster_id=0x0700,
                      header=hdr, payload=payload)
        for frame in server.handle(req, now):
            parse_price_frame(frame)
    assert tariff_from_dict(tariff_to_dict(tariff), source="stored") == tariff


def tariff_text(doc: Any, rng: random.Random) -> str | None:
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError, AttributeError):  # not a table, or not TOML's types
        return None
    if rng.random() < 0.15:  # damage the text itself
        i = rng.randrange(len(text) + 1)
        text = text[:i] + rng.choice(("", "=", "[", "]]", '"', "\n[tiers]\n", "\x00", "é")) \
            + text[i + rng.randrange(0, 3):]
    return text


def run_tariffs(name: str, seed: int, count: int, tmp: Path) -> tuple[Campaign, list[str]]:
    camp = Campaign.make(name, seed, count)
    rng = camp.rng()
    bases = tariff_documents()
    found: list[str] = []
    with CatchAllObserver() as observer:
        i = -1
        while camp.frames < camp.count:  # documents loaded (TOML cannot write every one)
            i += 1
            doc, what = mutate(rng.choice(bases), rng)
            via = rng.choice(("dict", "json", "toml", "toml", "file" if i % 50 == 0 else "toml"))
            problems: list[str] = []
            tariff = None
            try:
                if via == "dict":
                    tariff = tariff_from_dict(doc, source="campaign")
                elif via == "json":  # what MQTT set_tariff and the stored copy carry
                    text = json.dumps(json_safe(doc))
                    tariff = tariff_from_dict(json.loads(text), source="campaign")
                else:
                    text = tariff_text(doc, rng)
                    if text is None:
                        continue
                    if via == "file":
                        path = tmp / "tariff.toml"
                        path.write_text(text, encoding="utf-8")
                        try:
                            tariff_file(str(path))  # the command line's check
                        except argparse.ArgumentTypeError:
                            pass
                        from sep.meter.tariff import load_tariff

                        tariff = load_tariff(path)
                    else:
                        tariff = parse_tariff(text, source="campaign")
            except TariffError as exc:
                camp.outcomes["refused"] += 1
                if not exc.key or not str(exc):
                    problems.append(f"TariffError without a key: {exc!r}")
            except Exception as exc:  # noqa: BLE001 - the oracle counts it
                camp.internal_exceptions += 1
                problems.append(f"{type(exc).__name__}: {exc}")
            if tariff is not None:
                camp.outcomes["loaded"] += 1
                try:
                    serve_tariff(tariff)
                except Exception as exc:  # noqa: BLE001
                    camp.unparsable += 1
                    problems.append(f"loaded but not servable: {type(exc).__name__}: {exc}")
            caught = observer.take()
            camp.internal_exceptions += len(caught)
            problems += [CatchAllObserver.describe(r) for r in caught]
            camp.frames += 1
            if problems:
                found.append(f"#{i} via {via} ({what}): {problems}")
                if len(found) > 10:
                    break
    camp.report()
    return camp, found


def test_tariff_loader_sample(tmp_path):
    camp, found = run_tariffs("tariff-sample", 20265, 700, tmp_path)
    assert not found, "\n".join(found)
    assert camp.outcomes["loaded"] > 50 and camp.outcomes["refused"] > 300


@pytest.mark.slow
@pytest.mark.timeout(10800)  # a campaign, not a hang
def test_tariff_loader_campaign(tmp_path):
    camp, found = run_tariffs("tariff", 5, 100_000, tmp_path)
    assert not found, "\n".join(found)
    assert camp.frames == camp.count and camp.internal_exceptions == 0


# -- the other loaders ------------------------------------------------------------------------
def url(rng: random.Random) -> str:
    scheme = rng.choice(("mqtt", "mqtts", "MQTT", "http", "", "mqtt+ws", "mqtt:"))
    user = rng.choice(("", "user@", "user:pass@", "u%20x:p%2Fy@", ":@", "@", "a:b:c@", "%zz@"))
    host = rng.choice(("127.0.0.1", "broker", "", "[::1]", "[::1", "::1", "é.example",
                       "a" * 300, " ", "host name", "[fe80::1%25eth0]"))
    port = rng.choice(("", ":1883", ":0", ":65535", ":65536", ":-1", ":abc", ":", ":8883 ",
                       ":99999999999999999999"))
    tail = rng.choice(("", "/", "/path", "?q=1", "#frag", "/../"))
    text = f"{scheme}://{user}{host}{port}{tail}"
    if rng.random() < 0.1:
        i = rng.randrange(len(text) + 1)
        text = text[:i] + chr(rng.randrange(1, 0x3000)) + text[i:]
    return text


def check_url(rng: random.Random, tmp: Path) -> str:
    try:
        cfg = BridgeConfig.from_url(url(rng))
    except BridgeConfigError:
        return "refused"
    assert isinstance(cfg.host, str) and cfg.host, cfg
    assert isinstance(cfg.port, int) and 0 < cfg.port < 65536, cfg
    return "loaded"


def write_mutated(path: Path, good: Any, rng: random.Random) -> None:
    doc, _ = mutate(good, rng)
    text = json.dumps(json_safe(doc))
    if rng.random() < 0.2:
        i = rng.randrange(len(text) + 1)
        text = text[:i] + text[i + rng.randrange(1, 4):]
    path.write_bytes(text.encode() if rng.random() > 0.05 else rng.randbytes(20))


def check_ncp_state(rng: random.Random, tmp: Path) -> str:
    from radios.ncp.state import NcpState

    good = NcpState(eui64="00:0d:6f:00:00:00:5a:01", formed=True, pan_id=0x1A62).to_json()
    good["link_keys"] = [{"ieee": "00:0d:6f:00:00:00:5a:02", "key": "00" * 16}]
    path = tmp / "ncp.json"
    write_mutated(path, good, rng)
    try:
        state = NcpState.load(path)
    except ValueError:
        return "refused"
    state.ieee  # noqa: B018 - usable: its identity and what bellows reads back
    for name in ("pan_id", "channel", "channels", "tx_power", "nwk_update_id",
                 "nwk_manager_id", "network_key_seq", "nwk_frame_counter", "boot_counter"):
        assert isinstance(getattr(state, name), int), name
    bytes.fromhex(state.network_key)
    from ncp_campaign import RecordingRadio

    from radios.ncp.ezsp import EzspNcp

    EzspNcp(state, RecordingRadio())._network_params().serialize()  # what the host reads
    state.save(tmp / "ncp-saved.json")
    return "loaded"


def check_identity(rng: random.Random, tmp: Path) -> str:
    from sep.app import MeterSettings, load_identity

    data = tmp / "meter"
    data.mkdir(exist_ok=True)
    write_mutated(data / "identity.json", {"ieee": "00:0d:6f:00:00:00:1d:01"}, rng)
    try:
        ieee = load_identity(MeterSettings(data_dir=data))
    except ValueError as exc:
        assert "identity.json" in str(exc), exc
        return "refused"
    t.EUI64.convert(ieee)
    return "loaded"


def check_slots(rng: random.Random, tmp: Path) -> str:
    from sep.firmware.slots import SlotManager

    data = tmp / "slotdata"
    slots = SlotManager(data)
    good_boot = {"active": "A", "previous": "factory", "pending": None, "trial": True,
                 "trial_boots": 0}
    write_mutated(slots.boot_path, good_boot, rng)
    meta = {"file_version": 0x00010001, "app_sha256": "0" * 64, "image_sha256": "0" * 64}
    write_mutated(slots.slot_dir("A") / "meta.json", meta, rng)
    state = slots.boot_state()
    assert state.active in ("A", "B", "factory") and isinstance(state.trial, bool)
    assert isinstance(state.trial_boots, int) and not isinstance(state.trial_boots, bool)
    slot, info, _events = slots.choose_boot()
    assert slot in ("A", "B", "factory") and (info is None or isinstance(info.file_version, int))
    return "loaded"


def check_download(rng: random.Random, tmp: Path) -> str:
    from sep.ota.staging import FileSink

    sink = FileSink(tmp / "ota")
    good = {"ident": {"manufacturer": 0x1234, "image_type": 1, "file_version": 0x00010001,
                      "size": 4096}, "offset": 1024}
    write_mutated(sink.state_path, good, rng)
    sink.data_path.write_bytes(b"\x00" * rng.choice((0, 1024, 5000)))
    state = sink.state()
    sink.close()
    if state is None:
        return "refused"
    ident = state.ident
    for value in (ident.manufacturer, ident.image_type, ident.file_version, ident.size,
                  state.offset):
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, state
    assert state.offset <= ident.size, state
    return "loaded"


def check_trust(rng: random.Random, tmp: Path, good: dict[str, Any]) -> str:
    from sep.firmware.keys import KeyMaterialError, load_trust

    d = tmp / "trust"
    d.mkdir(exist_ok=True)
    write_mutated(d / "ca.pub", good["ca"], rng)
    lines = good["allowed"].splitlines()
    if rng.random() < 0.3:
        lines.append(rng.choice(("zz", "00:11", "00:0d:6f:00:00:00:00:01 # ok", "\x00", "")))
    (d / "allowed_signers.txt").write_text("\n".join(lines))
    try:
        load_trust(d)
    except (KeyMaterialError, OSError):
        return "refused"
    return "loaded"


def trust_material(tmp: Path) -> dict[str, Any]:
    from sep.cli import main

    keys = tmp / "keys"
    assert main(["ota", "keygen", str(keys), "--suite", "1"]) == 0
    return {"ca": json.loads((keys / "ca.pub").read_text()),
            "allowed": (keys / "allowed_signers.txt").read_text()}


def run_loaders(name: str, seed: int, count: int, tmp: Path) -> tuple[Campaign, list[str]]:
    camp = Campaign.make(name, seed, count)
    rng = camp.rng()
    good_trust = trust_material(tmp)
    loaders: dict[str, Callable[[random.Random, Path], str]] = {
        "broker URL": check_url, "NCP state": check_ncp_state, "identity": check_identity,
        "slots": check_slots, "download": check_download,
        "trust": lambda r, d: check_trust(r, d, good_trust),
    }
    names = sorted(loaders)
    found: list[str] = []
    with CatchAllObserver(allow=("boot.json unreadable", "slot A is corrupt",
                                 "slot B is corrupt", "download record not used")
                          ) as observer:
        for i in range(camp.count):
            which = names[i % len(names)]
            state = rng.getstate()
            problems: list[str] = []
            try:
                camp.outcomes[f"{which} {loaders[which](rng, tmp)}"] += 1
            except AssertionError as exc:
                camp.unentitled += 1
                problems.append(f"{which}: loaded something unusable: {exc}")
            except Exception as exc:  # noqa: BLE001 - the oracle counts it
                camp.internal_exceptions += 1
                problems.append(f"{which}: {type(exc).__name__}: {exc}")
            caught = observer.take()
            camp.internal_exceptions += len(caught)
            problems += [CatchAllObserver.describe(r) for r in caught]
            camp.frames += 1
            if problems:
                found.append(f"#{i} (rng state {hash(state) & 0xFFFF:04x}): {problems}")
                if len(found) > 10:
                    break
    camp.report()
    return camp, found


def test_config_loaders_sample(tmp_path):
    camp, found = run_loaders("config-loaders-sample", 20266, 1200, tmp_path)
    assert not found, "\n".join(found)


@pytest.mark.slow
@pytest.mark.timeout(10800)  # a campaign, not a hang
def test_config_loaders_campaign(tmp_path):
    camp, found = run_loaders("config-loaders", 6, 100_000, tmp_path)
    assert not found, "\n".join(found)
    assert camp.frames == camp.count


def test_odd_values_cover_the_edges():
    # the generator reaches NaN and infinity (TOML has both), which loaders must refuse
    rng = random.Random(1)
    values = [odd_value(rng, 1.0) for _ in range(400)]
    assert any(isinstance(v, float) and math.isnan(v) for v in values)
    assert any(v == float("inf") for v in values)
