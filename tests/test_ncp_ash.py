"""The emulator's ASH device side, against bellows' own host side (bellows.ash.AshProtocol).

The two ends run in one event loop over an in-memory link that can drop or damage
frames in either direction; nothing of bellows is patched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import bellows.types as bt
import pytest
from bellows.ash import (
    AckFrame,
    AshProtocol,
    DataFrame,
    NakFrame,
    RStackFrame,
    RstFrame,
    parse_frame,
)
from hypothesis import given
from hypothesis import strategies as st

from radios.ncp.ash import (
    CANCEL,
    FLAG,
    RESERVED,
    SUBSTITUTE,
    XOFF,
    XON,
    AshDevice,
    HostReset,
    Received,
    encode,
    stuff,
    unstuff,
)

Filter = Callable[[int, bytes], bytes | None]  # (frame index, frame bytes incl. Flag) -> bytes


def frames_of(data: bytes) -> list[bytes]:
    out, cur = [], bytearray()
    for b in data:
        cur.append(b)
        if b == FLAG:
            out.append(bytes(cur))
            cur.clear()
    if cur:
        out.append(bytes(cur))
    return out


def parsed(data: bytes):
    return [parse_frame(unstuff(f[:-1])) for f in frames_of(data) if f[:-1].strip(bytes([CANCEL]))]


# -- pure framing ----------------------------------------------------------------------
@given(st.binary(max_size=300))
def test_stuffing_round_trips_and_hides_every_reserved_byte(data):
    stuffed = stuff(data)
    assert unstuff(stuffed) == data
    assert not (set(stuffed) & (RESERVED - {0x7D}))  # only Escape bytes remain reserved


def test_xon_xoff_are_escaped_on_the_wire():
    dev = AshDevice()
    dev.power_on()
    dev.output()
    dev.send(bytes([XON, XOFF, FLAG, 0x7D, SUBSTITUTE, CANCEL]) * 4, now=0.0)
    wire = dev.output()
    assert XON not in wire and XOFF not in wire and SUBSTITUTE not in wire
    assert CANCEL not in wire and wire.count(FLAG) == 1


def test_power_on_announces_rstack_that_bellows_parses():
    dev = AshDevice()
    dev.power_on()
    (frame,) = parsed(dev.output())
    assert frame == RStackFrame(version=2, reset_code=bt.NcpResetCode.RESET_POWER_ON)


def test_rst_resets_and_answers_software_reset():
    dev = AshDevice()
    dev.power_on()
    dev.output()
    events = dev.receive(bytes([CANCEL] * 32) + encode(RstFrame()), now=0.0)
    assert events == [HostReset()]
    (frame,) = parsed(dev.output())
    assert frame.reset_code == bt.NcpResetCode.RESET_SOFTWARE


def test_data_is_acked_duplicates_reacked_out_of_sequence_naked_once():
    dev = AshDevice()
    dev.power_on()
    dev.output()
    f0 = DataFrame(frm_num=0, re_tx=False, ack_num=0, ezsp_frame=b"\x01\x00\x01\x05\x00")
    assert dev.receive(encode(f0), 0.0) == [Received(f0.ezsp_frame)]
    assert parsed(dev.output()) == [AckFrame(res=0, ncp_ready=0, ack_num=1)]
    # the host did not see our ACK and sends frame 0 again with reTx: ACK, not delivered
    assert dev.receive(encode(f0.replace(re_tx=True)), 0.1) == []
    assert parsed(dev.output()) == [AckFrame(res=0, ncp_ready=0, ack_num=1)]
    # frame 3 when 1 is expected: NAK, and only one NAK per reject condition
    f3 = f0.replace(frm_num=3)
    assert dev.receive(encode(f3) + encode(f3), 0.2) == []
    assert parsed(dev.output()) == [NakFrame(res=0, ncp_ready=0, ack_num=1)]
    assert dev.stats.naks_sent == 1


def test_damaged_data_frame_is_naked_and_garbage_ignored():
    dev = AshDevice()
    dev.power_on()
    dev.output()
    good = encode(DataFrame(frm_num=0, re_tx=False, ack_num=0, ezsp_frame=b"\x00\x00\x01\x00\x00"))
    bad = bytes([good[0], good[1] ^ 0x01]) + good[2:]
    assert dev.receive(bad, 0.0) == []
    assert parsed(dev.output()) == [NakFrame(res=0, ncp_ready=0, ack_num=0)]
    # noise, a Substitute-poisoned frame, a Cancel, an over-long run: nothing delivered
    noise = bytes(range(256)) * 3 + bytes([SUBSTITUTE]) + good + bytes([CANCEL]) + b"\xff" * 2000
    assert dev.receive(noise + bytes([FLAG]), 0.1) == []
    # and the session still works afterwards
    assert dev.receive(good, 0.2) == [Received(b"\x00\x00\x01\x00\x00")]


def test_retransmits_on_timeout_then_fails_with_error_frame():
    dev = AshDevice(t_rx_ack_init=0.5)
    dev.power_on()
    dev.output()
    dev.send(b"\x00\x80\x01\x05\x00", now=0.0)
    (first,) = parsed(dev.output())
    assert isinstance(first, DataFrame) and not first.re_tx
    now = 0.0
    retries = 0
    while not dev.failed:
        now = dev.next_deadline()
        dev.poll(now)
        out = parsed(dev.output())
        if isinstance(out[0], DataFrame):
            assert out[0].re_tx and out[0].frm_num == 0
            retries += 1
    assert retries == 4
    assert parsed(dev.output()) == []
    # in FAILED state DATA is ignored; only RST brings it back
    assert dev.receive(encode(DataFrame(frm_num=0, re_tx=False, ack_num=1, ezsp_frame=b"x" * 5)), now) == []
    assert dev.receive(encode(RstFrame()), now) == [HostReset()]
    assert dev.connected


def test_nak_from_host_retransmits_immediately():
    dev = AshDevice()
    dev.power_on()
    dev.output()
    dev.send(b"\x00\x80\x01\x05\x00", now=0.0)
    dev.output()
    dev.receive(encode(NakFrame(res=0, ncp_ready=0, ack_num=0)), 0.01)
    (again,) = parsed(dev.output())
    assert again.re_tx and again.frm_num == 0


# -- against bellows' host protocol ---------------------------------------------------------
class _HostTransport(asyncio.Transport):
    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link
        self.closed = False

    def write(self, data: bytes) -> None:
        self.link.host_wrote(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class _HostUpper:
    """What bellows' Gateway would be: collects frames and resets."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.resets: list[bt.NcpResetCode] = []
        self.errors: list[bt.NcpResetCode] = []
        self.got_frame = asyncio.Event()

    def connection_made(self, transport) -> None: ...

    def connection_lost(self, exc) -> None: ...

    def eof_received(self) -> None: ...

    def data_received(self, data: bytes) -> None:
        self.frames.append(data)
        self.got_frame.set()

    def reset_received(self, code) -> None:
        self.resets.append(code)

    def error_received(self, code) -> None:
        self.errors.append(code)


class Link:
    """bellows host <-> AshDevice in one loop; filters may drop (None) or alter frames."""

    def __init__(self, *, h2d: Filter | None = None, d2h: Filter | None = None,
                 echo: bool = True, t_rx_ack_init: float = 1.6) -> None:
        self.loop = asyncio.get_running_loop()
        self.upper = _HostUpper()
        self.host = AshProtocol(self.upper)
        self.device = AshDevice(t_rx_ack_init=t_rx_ack_init)
        self.h2d, self.d2h = h2d, d2h
        self.n_h2d = self.n_d2h = 0
        self.echo = echo
        self.delivered: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self.host.connection_made(_HostTransport(self))

    def now(self) -> float:
        return self.loop.time()

    def host_wrote(self, data: bytes) -> None:
        for frame in frames_of(data):
            self.n_h2d += 1
            if self.h2d is not None:
                frame = self.h2d(self.n_h2d, frame)
            if frame:
                self.loop.call_soon(self._to_device, frame)

    def _to_device(self, data: bytes) -> None:
        for ev in self.device.receive(data, self.now()):
            if isinstance(ev, Received):
                self.delivered.append(ev.frame)
                if self.echo:
                    self.device.send(b"\x00\x80" + ev.frame[2:], self.now())
        self._flush()

    def _flush(self) -> None:
        out = self.device.output()
        for frame in frames_of(out):
            self.n_d2h += 1
            if self.d2h is not None:
                frame = self.d2h(self.n_d2h, frame)
            if frame:
                self.loop.call_soon(self.host.data_received, frame)
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.device.next_deadline()
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.device.poll(self.now())
        self._flush()

    def power_on(self) -> None:
        self.device.power_on()
        self._flush()

    def device_send(self, frame: bytes) -> None:
        self.device.send(frame, self.now())
        self._flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


async def _settle(link: Link, n: int, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while len(link.upper.frames) < n:
            link.upper.got_frame.clear()
            await link.upper.got_frame.wait()


async def test_bellows_host_and_device_exchange_frames():
    link = Link()
    link.power_on()
    await asyncio.sleep(0)
    assert link.upper.resets == [bt.NcpResetCode.RESET_POWER_ON]
    sent = [bytes([i, 0x00, 0x01, 0x81, 0x00, i]) for i in range(20)]
    for frame in sent:
        await link.host.send_data(frame)
    await _settle(link, 20)
    assert link.delivered == sent
    assert link.upper.frames == [b"\x00\x80" + f[2:] for f in sent]
    # unsolicited frames (callbacks) from the device, several queued at once
    for i in range(5):
        link.device_send(bytes([0x10, 0x90, 0x01, 0x19, 0x00, i]))
    await _settle(link, 25)
    assert [f[-1] for f in link.upper.frames[20:]] == list(range(5))
    assert link.device.stats.retransmissions == 0
    link.close()


def _drop(which: set[int]) -> Filter:
    def f(i: int, frame: bytes) -> bytes | None:
        return None if i in which else frame
    return f


def _corrupt_every(k: int) -> Filter:
    def f(i: int, frame: bytes) -> bytes | None:
        if i % k == 0 and len(frame) > 3:
            return frame[:1] + bytes([frame[1] ^ 0x40]) + frame[2:]
        return frame
    return f


@pytest.mark.parametrize("h2d,d2h", [
    (_drop({3, 8}), None),               # a host DATA frame and a host ACK lost
    (None, _drop({3, 4, 9, 10, 11})),    # our DATA and ACK frames lost
    (_corrupt_every(3), _corrupt_every(5)),  # CRC errors both ways -> NAKs
], ids=["drop-to-ncp", "drop-to-host", "corrupt-both"])
async def test_lossy_link_delivers_everything_once_in_order(h2d, d2h):
    link = Link(h2d=h2d, d2h=d2h, t_rx_ack_init=0.4)
    link.power_on()
    await asyncio.sleep(0.01)
    sent = [bytes([i, 0x00, 0x01, 0x81, 0x00, i, i]) for i in range(12)]
    for frame in sent:
        async with asyncio.timeout(15):
            await link.host.send_data(frame)
    await _settle(link, len(sent))
    assert link.delivered == sent  # once each, in order: duplicates were not delivered
    assert link.upper.frames == [b"\x00\x80" + f[2:] for f in sent]
    stats = link.device.stats
    recovered = (stats.retransmissions + stats.duplicates + stats.naks_sent
                 + stats.retransmitted_in + stats.naks_received)
    assert recovered > 0, stats
    link.close()
