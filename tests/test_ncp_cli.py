"""`sep ncp-emulator` by hand: it prints where it listens, bellows talks to it, it logs."""

from __future__ import annotations

import asyncio
import json
import re
import sys

import zigpy.config
from bellows.ezsp import EZSP


async def test_ncp_emulator_command(tmp_path):
    state = tmp_path / "ncp.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sep.cli", "ncp-emulator", "--listen", "127.0.0.1:0",
        "--state", str(state), "--ieee", "00:0d:6f:00:00:00:c1:01", "--pty", "--duration", "30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(10):
            first = (await proc.stdout.readline()).decode()
        match = re.search(r"on (socket://127\.0\.0\.1:\d+) and (/dev/pts/\d+)", first)
        assert match, first
        ezsp = EZSP(zigpy.config.SCHEMA_DEVICE({zigpy.config.CONF_DEVICE_PATH: match[1]}))
        await ezsp.connect(use_thread=False)
        try:
            assert await ezsp.echo(data=b"cli") == [b"cli"]
            (state_rsp,) = await ezsp.networkState()
            assert state_rsp == 0  # NO_NETWORK: a factory-new stick
            await ezsp.version()  # asked again: still 13, nothing breaks
            ezsp._protocol._seq = 77
            rsp = await ezsp._protocol.command("nop")
            assert rsp == []
        finally:
            await ezsp.disconnect()
        proc.terminate()  # SIGTERM: a clean stop
        async with asyncio.timeout(15):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = err.decode()
    assert proc.returncode == 0, log
    for line in ("host connected on tcp", "EZSP version 13 agreed", "gone (disconnected)"):
        assert line in log, log
    assert "stopped: 1 connection(s)" in out.decode()
    saved = json.loads(state.read_text())
    assert saved["eui64"] == "00:0d:6f:00:00:00:c1:01" and saved["formed"] is False
