"""The emulator's EZSP layer: bad input gets a real NCP's answers, and it never dies.

Sans-IO first (frames in, frames out, bellows' own command tables to build and read
them), then over TCP with garbage on the line, and bellows' own EZSP object afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random

import bellows.types as bt
import zigpy.config
from bellows.ash import AckFrame, DataFrame, RStackFrame, RstFrame, parse_frame
from bellows.ezsp import EZSP
from hypothesis import given, settings
from hypothesis import strategies as st

from radios.air import VirtualAir
from radios.ncp import start_emulator
from radios.ncp.ash import FLAG, encode, unstuff
from radios.ncp.ezsp import COMMANDS, EzspNcp, decode_frame
from radios.ncp.state import NcpState

Ezsp = bt.EzspStatus


class Radio:
    """The node below the NCP, reduced to a recorder (no air needed for these tests)."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.up = False

    def network_up(self) -> None:
        self.up = True

    def network_down(self) -> None:
        self.up = False

    def send_unicast(self, nwk, aps, tag, payload) -> int:
        self.sent.append(("unicast", nwk, tag, payload))
        return 1

    def send_broadcast(self, dst, aps, radius, tag, payload) -> int:
        self.sent.append(("broadcast", dst, tag, payload))
        return 2

    def permit_joining(self, seconds) -> None: ...

    def lookup_eui64(self, nwk):
        return None

    def lookup_node_id(self, eui64):
        return None


def legacy(seq: int, frame_id: int, params: bytes = b"") -> bytes:
    return bytes([seq, 0x00, frame_id]) + params


def cmd(seq: int, name: str, **kwargs) -> bytes:
    """An extended (v8+) command frame, serialised with bellows' v13 schema."""
    frame_id, schema, _ = COMMANDS[name]
    return bytes([seq, 0x00, 0x01]) + frame_id.to_bytes(2, "little") + bt.serialize_dict(
        [], kwargs, schema)


def answer(ncp: EzspNcp) -> tuple[int, str, dict]:
    (frame,) = ncp.take()
    if frame[2] == 0x01:  # extended format
        frame_id, params = int.from_bytes(frame[3:5], "little"), frame[5:]
    else:  # legacy: the answer to a legacy-format frame
        frame_id, params = frame[2], frame[3:]
    name = next(n for n, (i, _, _) in COMMANDS.items() if i == frame_id)
    schema = COMMANDS[name][2]
    if isinstance(schema, dict):
        values, _rest = bt.deserialize_dict(params, schema)
    else:
        values = schema.deserialize(params)[0].as_dict()
    assert frame[1] & 0x80, "a response has the response bit"
    return frame[0], name, values


def negotiated() -> EzspNcp:
    ncp = EzspNcp(NcpState(eui64="00:0d:6f:00:00:00:ee:02"), Radio())
    ncp.handle(legacy(0, 0x00, b"\x04"))
    ncp.handle(cmd(1, "version", desiredProtocolVersion=13))
    ncp.take()
    return ncp


def test_version_negotiation_as_bellows_does_it():
    ncp = EzspNcp(NcpState(), Radio())
    # bellows starts with v4 in the legacy format: the NCP says 13, version still unset
    ncp.handle(legacy(7, 0x00, b"\x04"))
    (frame,) = ncp.take()
    assert frame[:3] == bytes([7, 0x80, 0x00]) and frame[3] == 13 and frame[4] == 2
    assert not ncp.version_set
    # ... so any other command is refused with VERSION_NOT_SET
    ncp.handle(cmd(8, "nop"))
    assert answer(ncp) == (8, "invalidCommand", {"status": Ezsp.ERROR_VERSION_NOT_SET})
    # asking for ours, in the extended format, sets it
    ncp.handle(cmd(9, "version", desiredProtocolVersion=13))
    seq, name, values = answer(ncp)
    assert (seq, name, values["protocolVersion"], values["stackVersion"]) == (
        9, "version", 13, 0x7440)
    assert ncp.version_set
    ncp.handle(cmd(10, "echo", data=b"hello"))
    assert answer(ncp) == (10, "echo", {"echo": b"hello"})


def test_a_wrong_version_is_answered_with_ours_and_not_accepted():
    ncp = EzspNcp(NcpState(), Radio())
    for desired in (8, 12, 14, 19, 255):
        ncp.handle(cmd(desired, "version", desiredProtocolVersion=desired))
        _seq, name, values = answer(ncp)
        assert name == "version" and values["protocolVersion"] == 13
        assert not ncp.version_set
        ncp.handle(cmd(1, "getEui64"))
        assert answer(ncp)[2] == {"status": Ezsp.ERROR_VERSION_NOT_SET}


def test_unknown_and_malformed_commands_get_invalid_command():
    ncp = negotiated()
    cases = [
        (bytes([3, 0x00, 0x01, 0x77, 0x77]), Ezsp.ERROR_INVALID_FRAME_ID),  # no such id
        (bytes([4, 0x00, 0x01]) + COMMANDS["zllNetworkOps"][0].to_bytes(2, "little"),
         Ezsp.ERROR_INVALID_FRAME_ID),  # a real id the emulated firmware lacks
        (bytes([5, 0x80, 0x01, 0x05, 0x00]), Ezsp.ERROR_WRONG_DIRECTION),  # a "response"
        (bytes([6, 0x00, 0x81, 0x05, 0x00]), Ezsp.ERROR_UNSUPPORTED_CONTROL),  # secure EZSP
        (bytes([7, 0x00, 0x02, 0x05, 0x00]), Ezsp.ERROR_UNSUPPORTED_CONTROL),  # format 2
        (legacy(8, 0x05), Ezsp.ERROR_UNSUPPORTED_CONTROL),  # legacy after v13 agreed
        (cmd(9, "getValue", valueId=bt.EzspValueId.VALUE_VERSION_INFO)[:5],
         Ezsp.ERROR_INVALID_VALUE),  # parameters missing
        (cmd(10, "echo", data=b"x" * 240), Ezsp.ERROR_COMMAND_TOO_LONG),
        (b"\x0b", Ezsp.ERROR_INVALID_VALUE),
    ]
    for frame, status in cases:
        ncp.handle(frame)
        seq, name, values = answer(ncp)
        assert (name, values["status"]) == ("invalidCommand", status), frame.hex()
        assert seq == frame[0]
    assert ncp.counters.invalid == len(cases)
    ncp.handle(cmd(12, "nop"))  # and it carries on
    assert answer(ncp) == (12, "nop", {})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_frame_gets_exactly_one_answer(data):
    ncp = negotiated()
    ncp.handle(data)
    assert len(ncp.outbox) == 1
    out = ncp.outbox[0]
    assert out[0] == (data[0] if data else 0) and out[1] & 0x80


def test_network_commands_before_and_after_forming():
    radio = Radio()
    ncp = negotiated()
    ncp.radio = radio
    ncp.handle(cmd(1, "networkInit", networkInitBitmask=0))
    assert answer(ncp)[2] == {"status": bt.EmberStatus.NOT_JOINED}
    ncp.handle(cmd(2, "sendUnicast", type=0, indexOrDestination=0x1234,
                   apsFrame=bt.EmberApsFrame(profileId=0x0109, clusterId=0x0702,
                                             sourceEndpoint=9, destinationEndpoint=1,
                                             options=0, groupId=0, sequence=0),
                   messageTag=5, messageContents=b"\x18\x01\x01"))
    assert answer(ncp)[2]["status"] == bt.EmberStatus.NETWORK_DOWN
    params = bt.EmberNetworkParameters(
        extendedPanId=bt.ExtendedPanId.convert("11:22:33:44:55:66:77:88"), panId=0x1A62,
        radioTxPower=8, radioChannel=15, joinMethod=0, nwkManagerId=0, nwkUpdateId=0,
        channels=bt.Channels.CHANNEL_15)
    ncp.handle(cmd(3, "formNetwork", parameters=params))
    first, second = ncp.take()
    assert decode_frame(first).frame_id == COMMANDS["formNetwork"][0]
    callback = decode_frame(second)
    assert callback.frame_id == COMMANDS["stackStatusHandler"][0] and second[1] & 0x10
    assert callback.params == bytes([bt.EmberStatus.NETWORK_UP])
    assert radio.up and ncp.state.formed and ncp.state.pan_id == 0x1A62
    ncp.handle(cmd(4, "addEndpoint", endpoint=9, profileId=0x0109, deviceId=0x0501,
                   deviceVersion=1, inputClusterCount=1, outputClusterCount=0,
                   inputClusterList=[0x0702], outputClusterList=[]))
    assert answer(ncp)[2]["status"] == Ezsp.ERROR_INVALID_CALL  # too late: network is up


def test_forming_on_a_channel_that_does_not_exist_is_refused():
    # found by tests/test_campaign_ncp.py: channel 185 was stored, with a 1 << 185 channel
    # mask that made every later getNetworkParameters fail inside the NCP
    ncp = negotiated()
    params = bt.EmberNetworkParameters(
        extendedPanId=bt.ExtendedPanId.convert("11:22:33:44:55:66:77:88"), panId=0x1A62,
        radioTxPower=8, radioChannel=185, joinMethod=0, nwkManagerId=0, nwkUpdateId=0,
        channels=0)
    ncp.handle(cmd(3, "formNetwork", parameters=params))
    assert answer(ncp)[2]["status"] == bt.EmberStatus.BAD_ARGUMENT  # EmberZNet's name for it
    assert not ncp.state.formed
    ncp.handle(cmd(4, "getNetworkParameters"))
    seq, name, values = answer(ncp)
    assert (seq, name) == (4, "getNetworkParameters") and values["parameters"].radioChannel != 185


# -- over TCP: garbage, then bellows -----------------------------------------------------------
class RawHost:
    """A minimal ASH host on a socket: enough to send odd EZSP frames."""

    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer
        self.buf = bytearray()
        self.tx = 0
        self.rx = 0

    async def frame(self, timeout: float = 3.0):
        async with asyncio.timeout(timeout):
            while FLAG not in self.buf:
                self.buf += await self.reader.read(4096)
        end = self.buf.index(FLAG)
        raw, self.buf = bytes(self.buf[:end]), self.buf[end + 1:]
        frame = parse_frame(unstuff(raw))
        if isinstance(frame, DataFrame):
            self.rx = (frame.frm_num + 1) % 8
            self.writer.write(encode(AckFrame(res=0, ncp_ready=0, ack_num=self.rx)))
        return frame

    async def data(self) -> bytes:
        while not isinstance(frame := await self.frame(), DataFrame):
            pass
        return frame.ezsp_frame

    def send(self, ezsp: bytes) -> None:
        self.writer.write(encode(DataFrame(frm_num=self.tx, re_tx=False, ack_num=self.rx,
                                           ezsp_frame=ezsp)))
        self.tx = (self.tx + 1) % 8


async def test_garbage_on_the_line_then_bellows_talks_to_it():
    emu = await start_emulator(VirtualAir(), ieee="00:0d:6f:00:00:00:ee:03")
    try:
        reader, writer = await asyncio.open_connection(emu.host, emu.port)
        host = RawHost(reader, writer)
        assert await host.frame() == RStackFrame(version=2,
                                                 reset_code=bt.NcpResetCode.RESET_POWER_ON)
        rng = random.Random(8)
        for _ in range(20):  # noise, with Flags, Escapes, Cancels and Substitutes in it
            writer.write(bytes(rng.choice(b"\x7e\x7d\x1a\x18\x11\x13\x00\xff") if rng.random()
                               < 0.2 else rng.randrange(256) for _ in range(rng.randrange(300))))
        writer.write(os.urandom(5000))
        writer.write(bytes([0x1A] * 32) + encode(RstFrame()))
        while not isinstance(await host.frame(), RStackFrame):
            pass
        host.send(legacy(1, 0x00, b"\x06"))  # an old host wanting EZSP v6
        assert (await host.data())[3] == 13
        host.send(cmd(2, "getEui64"))
        rsp = decode_frame(await host.data())
        assert rsp.frame_id == COMMANDS["invalidCommand"][0]
        assert rsp.params == bytes([Ezsp.ERROR_VERSION_NOT_SET])
        host.send(cmd(3, "version", desiredProtocolVersion=13))
        await host.data()
        host.send(bytes([4, 0x00, 0x01, 0xEE, 0xEE]))
        rsp = decode_frame(await host.data())
        assert (rsp.seq, rsp.params) == (4, bytes([Ezsp.ERROR_INVALID_FRAME_ID]))
        writer.close()
        assert emu.errors == 0 and emu.ncp.counters.invalid == 2
        assert emu.ash.stats.bad_frames > 0

        # bellows' own EZSP object connects afterwards and works
        await asyncio.sleep(0.05)
        ezsp = EZSP(zigpy.config.SCHEMA_DEVICE({zigpy.config.CONF_DEVICE_PATH: emu.url}))
        await ezsp.connect(use_thread=False)
        try:
            assert ezsp.ezsp_version == 13
            assert await ezsp.echo(data=b"still alive") == [b"still alive"]
            (eui64,) = await ezsp.getEui64()
            assert str(eui64) == "00:0d:6f:00:00:00:ee:03"
        finally:
            await ezsp.disconnect()
    finally:
        await emu.stop()


async def test_one_host_at_a_time():
    emu = await start_emulator(VirtualAir())
    try:
        r1, w1 = await asyncio.open_connection(emu.host, emu.port)
        await asyncio.sleep(0.05)
        r2, w2 = await asyncio.open_connection(emu.host, emu.port)
        async with asyncio.timeout(2):
            assert await r2.read() == b""  # refused: closed at once
        assert emu.refused == 1 and emu.connections == 1
        w1.close()
        w2.close()
    finally:
        await emu.stop()


async def test_bellows_over_the_pty():
    emu = await start_emulator(VirtualAir(), tcp=False, pty=True,
                               ieee="00:0d:6f:00:00:00:ee:04")
    try:
        assert emu.pty_path and emu.pty_path.startswith("/dev/pts/")
        ezsp = EZSP(zigpy.config.SCHEMA_DEVICE({zigpy.config.CONF_DEVICE_PATH: emu.pty_path}))
        await ezsp.connect(use_thread=False)  # a serial path: bellows resets with RST
        try:
            # XON/XOFF in the payload: escaped on the wire, so the tty's flow control
            # (bellows opens it with xonxoff) does not swallow them
            payload = bytes([0x11, 0x13, 0x7E, 0x7D, 0x18, 0x1A]) * 8
            assert await ezsp.echo(data=payload) == [payload]
            (eui64,) = await ezsp.getEui64()
            assert str(eui64) == "00:0d:6f:00:00:00:ee:04"
        finally:
            await ezsp.disconnect()
    finally:
        await emu.stop()
