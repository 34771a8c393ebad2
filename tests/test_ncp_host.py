"""The commands zigbee-herdsman's ember adapter sends beyond bellows' set (radios/ncp/cmd_host).

Frames are built and read with bellows' v13 tables; what a good answer is comes from UG100 and
from what herdsman's parser (src/adapter/ember/ezsp/ezsp.ts) accepts: ``ezspGetEndpointFlags``
throws on a value shorter than 2 bytes whatever the status, and adds the endpoint when the
status is not SUCCESS. tests/test_herdsman.py runs herdsman itself on them.
"""

from __future__ import annotations

import subprocess
import sys

import bellows.types as bt
import pytest
from test_ncp_ezsp import answer, cmd, negotiated

Ezsp = bt.EzspStatus
XV = bt.EzspExtendedValueId


def add_endpoint(ncp, seq: int, endpoint: int) -> None:
    ncp.handle(cmd(seq, "addEndpoint", endpoint=endpoint, profileId=0x0104, deviceId=0x65,
                   deviceVersion=1, inputClusterCount=1, outputClusterCount=0,
                   inputClusterList=[0x0000], outputClusterList=[]))
    assert answer(ncp)[2]["status"] == Ezsp.SUCCESS


def endpoint_flags(ncp, seq: int, endpoint: int) -> dict:
    ncp.handle(cmd(seq, "getExtendedValue", valueId=XV.EXTENDED_VALUE_ENDPOINT_FLAGS,
                   characteristics=endpoint))
    got_seq, name, values = answer(ncp)
    assert (got_seq, name) == (seq, "getExtendedValue")
    return values


def test_endpoint_flags_say_which_endpoints_the_host_added_since_the_reset():
    ncp = negotiated()
    before = endpoint_flags(ncp, 2, 1)
    assert before["status"] != Ezsp.SUCCESS  # herdsman adds it
    assert before["value"] == bt.uint16_t(bt.EzspEndpointFlags.ENDPOINT_DISABLED).serialize()
    add_endpoint(ncp, 3, 1)
    after = endpoint_flags(ncp, 4, 1)
    assert after == {"status": Ezsp.SUCCESS, "value": b"\x01\x00"}  # ENDPOINT_ENABLED
    assert endpoint_flags(ncp, 5, 242)["status"] != Ezsp.SUCCESS  # another one: not added
    for outside in (0x100, 0xFFFFFFFF):  # characteristics is a uint32: no such endpoint
        assert endpoint_flags(ncp, 6, outside)["status"] != Ezsp.SUCCESS
    ncp.reset()  # RAM is gone: so are the endpoints
    ncp.handle(cmd(0, "version", desiredProtocolVersion=13))
    ncp.take()
    assert endpoint_flags(ncp, 7, 1)["status"] != Ezsp.SUCCESS


def test_other_extended_values_and_unknown_ones():
    ncp = negotiated()
    ncp.handle(cmd(2, "getExtendedValue", valueId=XV.EXTENDED_VALUE_LAST_LEAVE_REASON,
                   characteristics=0))
    values = answer(ncp)[2]
    assert values["status"] == Ezsp.SUCCESS and len(values["value"]) == 3
    assert values["value"][1:] == b"\xff\xff"  # no one asked us to leave
    ncp.handle(cmd(3, "getExtendedValue", valueId=XV.EXTENDED_VALUE_GET_SOURCE_ROUTE_OVERHEAD,
                   characteristics=0x1234))
    assert answer(ncp)[2] == {"status": Ezsp.SUCCESS, "value": b"\x00"}
    for unknown in (XV.EXTENDED_VALUE_MEMORY_USAGE_DATA, 0x7F, 0xFF):
        ncp.handle(cmd(4, "getExtendedValue", valueId=unknown, characteristics=0))
        assert answer(ncp)[2] == {"status": Ezsp.ERROR_INVALID_ID, "value": b""}
    # parameters cut short: the frame is refused, not answered with a value
    ncp.handle(cmd(5, "getExtendedValue", valueId=0, characteristics=1)[:-2])
    assert answer(ncp)[1:] == ("invalidCommand", {"status": Ezsp.ERROR_INVALID_VALUE})


def test_cca_mode_is_kept_until_a_reset_and_a_bad_one_refused():
    ncp = negotiated()
    for mode in range(5):
        ncp.handle(cmd(2, "setRadioIeee802154CcaMode", cca_mode=mode))
        assert answer(ncp)[2] == {"status": bt.EmberStatus.SUCCESS}
        assert ncp.cca_mode == mode
    for bad in (5, 0xFF):
        ncp.handle(cmd(3, "setRadioIeee802154CcaMode", cca_mode=bad))
        assert answer(ncp)[2]["status"] != bt.EmberStatus.SUCCESS
        assert ncp.cca_mode == 4
    ncp.reset()
    assert ncp.cca_mode == 0


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--air", "udp://127.0.0.1:47000", "--air-port", "0"], 2, "give one of them"),
    (["--air-port", "70000"], 2, "not a port"),
    (["--air-port", "x"], 2, "not a port number"),
])
def test_air_port_usage_errors(args, code, says):
    proc = subprocess.run([sys.executable, "-m", "sep.cli", "ncp-emulator", "--listen",
                           "127.0.0.1:0", *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == code and says in proc.stderr, proc.stderr


def test_air_port_in_use_is_an_error_not_a_traceback():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "sep.cli", "ncp-emulator", "--listen",
                               "127.0.0.1:0", "--air-port", str(port), "--duration", "5"],
                              capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert f"--air-port {port}:" in proc.stderr and "Traceback" not in proc.stderr
