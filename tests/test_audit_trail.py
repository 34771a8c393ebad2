"""The audit trail: what the event log records (tariff and price changes, supply changes,
MQTT commands, clean and unclean stops, supervisor restarts, anything through
``MeterApp.audit``), the MAC-chained update log, checksummed identity/boot/download
records, and the cost today the meter reports (against the load model)."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from waiting import until

from hubsim.hub import CommsHub
from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock
from sep.firmware.slots import FACTORY, BootState, SlotManager
from sep.meter.cost import DailyCost
from sep.meter.tariff import load_tariff
from sep.metrology.load import HouseholdLoad
from sep.ota.client import ImageIdent
from sep.ota.staging import FileSink
from sep.store import Store
from sep.store.chainlog import ChainedLog
from sep.store.checked import CorruptFile, seal, unseal

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
ECONOMY7 = ROOT / "examples" / "tariff.toml"
NOON = 1_767_614_400  # Monday 2026-01-05 12:00 UTC
SEED = 5


def events(data: Path) -> list:
    store = Store.open(data)
    try:
        return store.events()
    finally:
        store.close()


# -- CRC-32 records --------------------------------------------------------------------------

def crc32_bitwise(data: bytes) -> int:
    """CRC-32/ISO-HDLC from its definition (reflected 0xEDB88320, init and xorout 0xFFFFFFFF)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_records_carry_a_crc32_of_their_canonical_content():
    assert crc32_bitwise(b"123456789") == 0xCBF43926  # the catalogue's check value
    doc = {"ieee": "00:0d:6f:00:00:00:aa:01", "n": 3}
    sealed = json.loads(seal(doc))
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert sealed["crc32"] == f"{crc32_bitwise(canonical):08x}"
    assert unseal(seal(doc)) == doc
    assert unseal(json.dumps(doc)) == doc  # written before checksums: accepted
    rotten = seal(doc).replace(b'"n": 3', b'"n": 7')
    with pytest.raises(CorruptFile, match="checksum"):
        unseal(rotten, "identity.json")
    with pytest.raises(CorruptFile):
        unseal(b'{"ieee": "00:0d', "identity.json")


def test_boot_and_download_records_are_not_used_when_rotten(tmp_path):
    slots = SlotManager(tmp_path)
    slots._save(BootState(active="A", previous=FACTORY, trial=False))
    assert slots.boot_state().active == "A"
    raw = json.loads(slots.boot_path.read_bytes())
    assert raw["crc32"]
    raw["active"] = "B"  # valid JSON, a valid slot name: only the checksum tells
    slots.boot_path.write_text(json.dumps(raw))
    assert slots.boot_state().active == FACTORY  # rot boots the factory image
    sink = FileSink(tmp_path / "ota")
    sink.begin(ImageIdent(0x1234, 1, 0x00010001, 1000))
    sink.write(0, b"x" * 400)
    sink.flush()
    sink.close()
    assert FileSink(tmp_path / "ota").state().offset == 400
    doc = json.loads(sink.state_path.read_bytes())
    doc["offset"] = 300  # a smaller offset would even look harmless
    sink.state_path.write_text(json.dumps(doc))
    assert FileSink(tmp_path / "ota").state() is None  # rot: the download starts again


# -- the MAC-chained update log --------------------------------------------------------------------

def test_the_update_log_is_a_mac_chain_that_shows_every_kind_of_tampering(tmp_path):
    key = bytes(range(32))
    log = ChainedLog(tmp_path / "update-log.jsonl", key)
    for n in range(5):
        log.append({"time": 1000.0 + n, "step": f"step {n}", "file_version": 0x10001})
    assert log.verify() == (5, [])
    lines = log.path.read_bytes().splitlines()
    # the construction as documented: HMAC-SHA256(key, previous MAC || canonical line)
    first = json.loads(lines[0])
    mac = first.pop("mac")
    want = hmac.new(key, bytes(32) + json.dumps(first, sort_keys=True, separators=(",", ":"))
                    .encode(), hashlib.sha256).hexdigest()
    assert mac == want and first["seq"] == 1

    def variant(new_lines: list[bytes]) -> list[str]:
        log.path.write_bytes(b"\n".join(new_lines) + b"\n")
        return log.verify()[1]

    edited = json.loads(lines[2])
    edited["step"] = "activated"
    assert any("MAC" in p for p in variant(lines[:2] + [json.dumps(edited).encode()]
                                           + lines[3:]))
    assert any("sequence" in p for p in variant(lines[:2] + lines[3:]))  # one removed
    assert variant([lines[0], lines[2], lines[1], *lines[3:]])  # reordered
    assert any("removed" in p for p in variant(lines[:4]))  # the last one cut off
    assert variant(lines) == []  # back as it was
    head = json.loads(log.head_path.read_text())
    head["seq"] = 3
    log.head_path.write_text(json.dumps(head))
    assert any("MAC" in p for p in log.verify()[1])  # a forged head
    # a torn last line (power cut while writing) is cut off, and the chain goes on
    log.head_path.unlink()
    log.path.write_bytes(b"\n".join(lines) + b"\n" + lines[4][:20])
    ChainedLog(log.path, key).append({"step": "after the power cut"})
    assert ChainedLog(log.path, key).verify() == (6, [])
    # another key cannot have written it
    assert ChainedLog(log.path, bytes(32)).verify()[1]


def test_sep_check_finds_a_tampered_update_log(tmp_path):
    data = tmp_path / "data"
    assert subprocess.run([str(BIN / "sep"), "meter", "--data", str(data), "--duration", "1"],
                          capture_output=True, timeout=60).returncode == 0
    log = ChainedLog.open(data)
    log.append({"step": "apply", "file_version": 0x10001})
    log.append({"step": "activated", "file_version": 0x10001})
    check = [str(BIN / "sep"), "check", "--data", str(data)]
    assert subprocess.run(check, capture_output=True, timeout=60).returncode == 0
    text = log.path.read_text().replace('"activated"', '"confirmed"')
    log.path.write_text(text)
    proc = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "update-log" in proc.stdout and "MAC" in proc.stdout


# -- what the event log records ------------------------------------------------------------------

@pytest.fixture
async def han(tmp_path):
    air = VirtualAir()
    clock = ManualClock()
    clock.t = NOON
    hub = CommsHub(air=air, clock=clock.now, tariff=load_tariff(ECONOMY7))
    await hub.start()
    meter = MeterApp(MeterSettings(ieee="00:0d:6f:00:00:00:1c:09", seed=SEED, tick_seconds=0.02,
                                   supplier_search_interval=0.2, data_dir=tmp_path),
                     clock=clock, air=air)
    await meter.start()
    await until(lambda: meter.supplier.esi is not None)
    try:
        yield clock, hub, meter
    finally:
        await meter.stop(reason="end of test")
        await hub.stop()


async def test_tariff_price_supply_and_one_call_audit_events(han, tmp_path):
    clock, hub, meter = han
    await until(lambda: meter.price.tariff.issuer_tariff_id == 7001)  # from the supplier
    hub.supplier.schedule_price(tier=2, unit_rate="0.6000", label="Peak event",
                                start=NOON + 600, duration_minutes=15)
    await until(lambda: any(e.label == "Peak event" for e in meter.price.events))
    supply = meter.metering.supply
    supply.local_change(1)  # the consumer's button: armed
    meter.audit("JOIN", ieee="00:0d:6f:00:00:00:77:01", nwk="0x1234", method="install code")
    evs = events(tmp_path)
    kinds = [e.kind for e in evs]
    tariff = [e.details for e in evs if e.kind == "TARIFF_CHANGE"]
    assert tariff and tariff[0]["issuer_tariff_id"] == 7001 and tariff[0]["source"] == "supplier"
    price = [e.details for e in evs if e.kind == "PRICE_CHANGE"]
    peak = [p for p in price if p["label"] == "Peak event"]
    assert peak == [{"issuer_event_id": peak[0]["issuer_event_id"], "tier": 2,
                     "rate": "0.6000", "label": "Peak event", "start": NOON + 600,
                     "duration_minutes": 15, "source": "supplier"}]
    # and the supplier's time-of-use prices it published (examples/tariff.toml rates)
    assert {p["rate"] for p in price} <= {"0.6000", "0.3127", "0.1545"}
    assert "SUPPLY_CHANGE" in kinds
    assert evs[-1].kind == "JOIN" and evs[-1].details["method"] == "install code"
    assert Store.open(tmp_path).check().clean


async def test_cost_today_is_the_standing_charge_plus_energy_at_the_rate(han):
    clock, _hub, meter = han
    await until(lambda: meter.price.tariff.issuer_tariff_id == 7001)
    first = meter.last_reading
    for _ in range(120):  # 12:00-14:00, every minute: all at the Day rate
        clock.advance(60)
        await meter.poll_metrology()
    load = HouseholdLoad(SEED)
    wh = lambda t: load.energy_j(NOON, t)[0] // 3600  # noqa: E731 - the model's register
    # examples/tariff.toml: standing charge 0.5312 a day, Day rate 0.3127 GBP/kWh; the
    # day's sum starts at the meter's first reading (it was not running before noon)
    kwh = Decimal(wh(meter.last_reading.timestamp) - wh(first.timestamp)) / 1000
    assert meter.cost.cost == Decimal("0.5312") + kwh * Decimal("0.3127")
    state = meter.meter_state()
    assert state.cost_today == meter.cost.cost and state.cost_day == NOON - 12 * 3600


def test_daily_cost_starts_again_at_midnight_with_the_standing_charge():
    cost = DailyCost()
    midnight = NOON + 12 * 3600
    cost.update(midnight - 120, 1000, Decimal("0.20"), Decimal("0.50"))
    cost.update(midnight - 60, 3000, Decimal("0.20"), Decimal("0.50"))  # 2 kWh at 0.20
    assert cost.cost == Decimal("0.90")
    cost.update(midnight + 60, 4000, Decimal("0.10"), Decimal("0.50"))  # a new day
    assert cost.cost == Decimal("0.60") and cost.day == midnight
    restored = DailyCost()
    restored.restore(json.loads(json.dumps(cost.state())))
    assert restored == cost


# -- stops and restarts --------------------------------------------------------------------------

def test_a_killed_meter_is_an_unclean_stop_in_the_next_power_up(tmp_path):
    data = tmp_path / "data"
    meter = [str(BIN / "sep"), "meter", "--data", str(data)]
    proc = subprocess.Popen(meter, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "serving" in proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert subprocess.run([*meter, "--duration", "1"], timeout=60).returncode == 0
    assert subprocess.run([*meter, "--duration", "1"], timeout=60).returncode == 0
    ups = [e.details["previous_stop"] for e in events(data) if e.kind == "POWER_UP"]
    assert ups == [None, "unclean", "clean"]


def test_the_supervisor_records_every_restart(tmp_path, monkeypatch):
    from sep.ota import supervisor

    monkeypatch.setattr(supervisor.time, "sleep", lambda s: None)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # a meter that cannot start (an option it does not know): exit 2, five times
        rc = supervisor.supervise(tmp_path, ["--no-such-option"], log=lambda line: None)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert rc == 1
    restarts = [e.details for e in events(tmp_path) if e.kind == "SUPERVISOR_RESTART"]
    assert [r["action"] for r in restarts] == ["restart"] * 4 + ["give up"]
    assert all(r["exit_code"] == 2 and r["slot"] == FACTORY for r in restarts)
