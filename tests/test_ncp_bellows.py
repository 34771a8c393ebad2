"""Unmodified bellows on the NCP emulator: the meter served through it, end to end.

The meter is ``sep.app.MeterApp`` with ``radio="ezsp"`` (bellows' ControllerApplication,
through ``radios.ezsp``); the emulator is attached to a virtual air on which the hubsim
IHD (zigpy, client side) finds the meter with a Match_Desc broadcast and reads Metering.
No CommsHub here: it is a coordinator at NWK 0x0000 too, and the meter on EZSP is the
coordinator of this network.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import bellows.types as bt
from required_tools import require_tool

from hubsim.ihd import InHomeDisplay
from radios.air import VirtualAir
from radios.ezsp import NetworkSettings, permit_with_install_code
from radios.ncp import start_emulator
from radios.pcap import PcapWriter, tshark_key_options
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock

TSHARK = shutil.which("tshark")
METER_IEEE = "00:0d:6f:00:00:00:ee:01"
IHD_IEEE = "00:0d:6f:00:00:00:1d:01"
IHD_CODE = bytes.fromhex("83fed3407a939723a5c639b26916d505c3b5")  # shared/vectors' code


def tshark(path: Path, *args: str) -> str:
    return subprocess.run([TSHARK, "-r", str(path), *tshark_key_options(path), *args],
                          capture_output=True, text=True, check=True).stdout


def meter_on(url: str, air: VirtualAir, **kw) -> MeterApp:
    settings = MeterSettings(radio="ezsp", device=url, endpoint=9, ieee=METER_IEEE,
                             tick_seconds=0.05, initial_wh=123_456, **kw)
    return MeterApp(settings, clock=ManualClock(), air=air)


async def read_summation(ihd: InHomeDisplay) -> int:
    ok, failed = await ihd.metering.read_attributes(["current_summ_delivered"],
                                                    allow_cache=False)
    assert not failed
    return int(ok["current_summ_delivered"])


@contextlib.asynccontextmanager
async def han(tmp_path: Path, *, proxy=None, pcap: Path | None = None):
    """(air, emulator, meter, ihd): the meter on bellows on the emulator, the IHD connected."""
    air = VirtualAir()
    writer = PcapWriter(pcap).capture(air) if pcap else None
    emu = await start_emulator(air, state_path=tmp_path / "ncp.json", ieee=METER_IEEE)
    url = emu.url if proxy is None else await proxy.start(emu.port)
    # SE: the meter's trust centre admits the IHD by its install code
    meter = meter_on(url, air, network=NetworkSettings(channel=air.channel, pan_id=air.pan_id,
                                                       tc_policy="install_code"))
    ihd = InHomeDisplay(air=air, ieee=IHD_IEEE, install_code=IHD_CODE)
    try:
        async with asyncio.timeout(25):
            await meter.start()
            await permit_with_install_code(meter.controller, IHD_IEEE, IHD_CODE)
            await ihd.start()
            await ihd.connect(timeout=15)
        yield air, emu, meter, ihd
    finally:
        await ihd.stop()
        await meter.stop()
        await emu.stop()
        if proxy is not None:
            await proxy.stop()
        if writer is not None:
            writer.close()


async def test_bellows_forms_and_the_meter_answers_the_ihd_through_the_emulator(tmp_path):
    pcap = tmp_path / "ezsp.pcap"
    async with han(tmp_path, pcap=pcap) as (_air, emu, meter, ihd):
        # bellows formed the network on the emulator (the virtual air's channel and PAN)
        assert any(e.startswith("network formed") for e in emu.ncp.events)
        info = meter.controller.state.network_info
        assert int(info.pan_id) == _air.pan_id and info.channel == _air.channel
        assert str(meter.controller.state.node_info.ieee) == METER_IEEE
        assert emu.ncp.version_set and emu.ncp.counters.invalid == 0
        # the IHD read the meter's registers through bellows and the emulator
        assert ihd.view.meter_nwk == 0x0000
        assert await read_summation(ihd) == meter.metering.read_value(0x0000)
        assert ihd.view.unit is not None and ihd.view.divisor
        assert emu.node.frames_received > 0 and emu.ash.stats.retransmissions == 0
        # the IHD's Device_annce reached zigpy as trustCenterJoinHandler (+ the ZDO frame)
        ihd_dev = meter.controller.get_device(ieee=ihd.app.state.node_info.ieee)
        assert int(ihd_dev.nwk) == int(ihd.app.state.node_info.nwk)
    require_tool("tshark")
    # Wireshark reads the traffic: ZDO discovery, SE ZCL from the coordinator, no errors
    assert tshark(pcap, "-Y", "_ws.malformed || _ws.expert.severity == error") == ""
    zcl = tshark(pcap, "-Y", "zbee_nwk.src == 0x0000 && zbee_zcl", "-T", "fields",
                 "-e", "zbee_aps.cluster")
    assert "0x0702" in zcl
    assert tshark(pcap, "-Y", "zbee_aps.zdp_cluster == 0x8006 && zbee_nwk.src == 0x0000")


async def test_persisted_network_is_resumed_not_formed_again(tmp_path):
    air = VirtualAir()
    state = tmp_path / "ncp.json"
    emu = await start_emulator(air, state_path=state, ieee=METER_IEEE)
    meter = meter_on(emu.url, air)
    async with asyncio.timeout(25):
        await meter.start()
    first = meter.controller.state.network_info
    await meter.stop()
    await emu.stop()
    assert any(e.startswith("network formed") for e in emu.ncp.events)

    # a new emulator process: only the state file carries the network over
    emu2 = await start_emulator(air, state_path=state)
    meter2 = meter_on(emu2.url, air)
    try:
        async with asyncio.timeout(25):
            await meter2.start()
        again = meter2.controller.state.network_info
        assert not any(e.startswith("network formed") for e in emu2.ncp.events)
        assert any(e.startswith("network resumed") for e in emu2.ncp.events)
        assert (again.pan_id, again.extended_pan_id, again.channel) == (
            first.pan_id, first.extended_pan_id, first.channel)
        assert again.network_key.key == first.network_key.key
        assert again.network_key.tx_counter >= first.network_key.tx_counter
        assert str(meter2.controller.state.node_info.ieee) == METER_IEEE
        # an SE join: the trust centre gets the install code's link key, install-code policy
        joiner = "00:0d:6f:00:00:00:1d:09"
        await permit_with_install_code(meter2.controller, joiner,
                                       "83FED3407A939723A5C639B26916D505C3B5", time_s=30)
        assert emu2.ncp.transient_keys[joiner].hex() == "66b6900981e1ee3ca4206b6b861c02bb"
        policy = emu2.ncp.policies[int(bt.EzspPolicyId.TRUST_CENTER_POLICY)]
        assert policy & bt.EzspDecisionBitmask.JOINS_USE_INSTALL_CODE_KEY
        assert emu2.node.node.permitting and emu2.node.node.state.tc_policy == "install_code"
        assert emu2.node.node.join_decision(int(joiner.replace(":", ""), 16)) is not None
    finally:
        await meter2.stop()
        await emu2.stop()


async def test_meter_reconnects_after_the_emulator_restarts(tmp_path):
    async with han(tmp_path) as (_air, emu, meter, ihd):
        before = await read_summation(ihd)
        await emu.restart(down_for=0.3)
        async with asyncio.timeout(20):
            while meter.controller.reconnects < 1:
                await asyncio.sleep(0.05)
        assert emu.connections == 2  # bellows came back on a new connection
        assert any(e.startswith("network resumed") for e in emu.ncp.events)
        assert not any(e.startswith("network formed") for e in emu.ncp.events)
        after = await read_summation(ihd)
        assert after >= before
        assert meter.controller.is_controller_running


class LossyProxy:
    """A TCP hop between bellows and the emulator that loses and damages ASH frames."""

    def __init__(self, *, drop_every: int, corrupt_every: int) -> None:
        self.drop_every = drop_every
        self.corrupt_every = corrupt_every
        self.lossy = False
        self.dropped = self.corrupted = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, upstream_port: int) -> str:
        self.upstream_port = upstream_port
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        return f"socket://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()

    async def _on_client(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)

    def _mangle(self, counts: list[int], frame: bytes) -> bytes | None:
        """counts = [frames, DATA frames] seen in this direction while lossy."""
        if not self.lossy or len(frame) < 4:
            return frame
        counts[0] += 1
        if counts[0] % self.drop_every == 0:
            self.dropped += 1
            return None
        if not frame[0] & 0x80:  # a DATA frame: every n-th one is damaged
            counts[1] += 1
            i = len(frame) // 2
            if counts[1] % self.corrupt_every == 0:
                for flip in (0x01, 0x02, 0x04):
                    if frame[i] not in RESERVED and frame[i] ^ flip not in RESERVED:
                        self.corrupted += 1
                        return frame[:i] + bytes([frame[i] ^ flip]) + frame[i + 1:]
        return frame

    async def _pump(self, reader, writer) -> None:
        buf, counts = bytearray(), [0, 0]
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(4096):
                buf += data
                while (end := buf.find(0x7E)) >= 0:
                    frame, buf = bytes(buf[:end + 1]), buf[end + 1:]
                    if (out := self._mangle(counts, frame)) is not None:
                        writer.write(out)
                await writer.drain()
        writer.close()


RESERVED = frozenset({0x7E, 0x7D, 0x11, 0x13, 0x18, 0x1A})


async def test_ash_recovers_from_lost_and_damaged_frames(tmp_path):
    proxy = LossyProxy(drop_every=13, corrupt_every=5)
    async with han(tmp_path, proxy=proxy) as (_air, emu, meter, ihd):
        proxy.lossy = True
        values = []
        async with asyncio.timeout(25):
            for _ in range(6):
                values.append(await read_summation(ihd))
        proxy.lossy = False
        assert values == sorted(values) and values[-1] == meter.metering.read_value(0x0000)
        stats = emu.ash.stats
        assert proxy.dropped and proxy.corrupted
        # the NCP saw damaged frames (NAKed them) and retransmissions from bellows, and
        # retransmitted its own frames when bellows' ACKs or its DATA frames were lost
        assert stats.bad_frames > 0 and stats.naks_sent > 0
        assert stats.retransmitted_in + stats.duplicates > 0
        assert stats.retransmissions > 0
        assert meter.controller.reconnects == 0  # the ASH session survived


async def test_reconnect_survives_a_serial_thread_that_stops_under_the_disconnect(tmp_path):
    """bellows runs the serial line on its own thread and stops that thread's loop when the
    line drops; a disconnect the host sends it in that moment is queued on a loop that never
    runs it again, and its future never resolves (seen in CI: the meter never came back).
    The window is widened here (the thread sleeps right after its loop is told to stop) so
    the race happens every time; the meter must still reconnect."""
    async with han(tmp_path) as (_air, emu, meter, ihd):
        before = await read_summation(ihd)
        gw_loop = meter.controller._ezsp._gw._obj_loop  # bellows' serial thread's loop
        stop = gw_loop.stop

        def stop_slowly() -> None:
            stop()
            time.sleep(0.5)  # (in bellows' thread) the host's disconnect arrives meanwhile

        gw_loop.stop = stop_slowly
        await emu.restart(down_for=0.3)
        async with asyncio.timeout(30):
            while meter.controller.reconnects < 1:
                await asyncio.sleep(0.05)
        assert await read_summation(ihd) >= before
        assert meter.controller.is_controller_running
