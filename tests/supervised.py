"""A supervised meter in its own processes, upgraded over a virtual air this test serves.

``sep supervise`` (the A/B supervisor, which runs ``sep meter`` — the factory image or a
slot's app) is started in a session of its own, so the whole process tree can be stopped
or killed at once; it joins an air that this process serves over loopback UDP, on which
hubsim's hub is the coordinator and the OTA server. What a test may look at is what an
operator can: the update log, ``sep version``, ``sep check`` and the supervisor's output,
and the meter's answer to a Read Attributes sent over the air.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import zigpy.types as zt
from zigpy.zcl import foundation

from hubsim.hub import CommsHub
from hubsim.ota_server import OtaServerCore, ServedImage, load_image
from radios.air import VirtualAir
from radios.node import SecurityError
from radios.rawnode import RawNode
from radios.shell import DeliveryFailed
from radios.udp import serve_udp
from sep.cli import main as sep_main
from sep.zcl.security import requires_aps_security

BIN = Path(sys.executable).parent
OLD = 0x00010000  # what the installed package (the factory image) says it is
CLIENT_IEEE = 0x00124B0000C11E47


def make_keys(directory: Path) -> Path:
    assert sep_main(["ota", "keygen", str(directory), "--suite", "1"]) == 0
    return directory


def build_app_image(keys: Path, out: Path, version: int, *, pad: int | None = None
                    ) -> ServedImage:
    """A signed application image of ``version``: this package as a zipapp (``sep ota
    build --app``), or with ``pad`` a zipapp whose ``__main__`` runs the installed package's
    ``sep`` (the same code) padded with ``pad`` random bytes, so a download takes about as
    long as a test wants."""
    if pad is None:
        args = ["--app"]
    else:
        payload = out.with_suffix(".pyz")
        with zipfile.ZipFile(payload, "w") as z:
            z.writestr("__main__.py", "import sys\nfrom sep.cli import main\nsys.exit(main())\n")
            z.writestr("padding.bin", random.Random(version).randbytes(pad))
        args = ["--payload", str(payload), "--manufacturer", "0x1234", "--image-type", "0x0001"]
    assert sep_main(["ota", "build", *args, "--file-version", f"0x{version:08X}", "--signer",
                     str(keys), "--out", str(out)]) == 0
    return load_image(out)


class Han:
    """The air, the hub with its OTA server, served on a loopback UDP port, and a HAN
    client (a node joined to the hub's network) that reads the meter's attributes over the
    secure air, under an application link key with the meter where SE requires one."""

    def __init__(self, core: OtaServerCore) -> None:
        self.core = core
        self.air = VirtualAir()
        self.hub = CommsHub(air=self.air, ota=core)
        self.server: Any = None
        self.port = 0
        self._client: RawNode | None = None
        self._tsn = 0

    async def start(self) -> Han:
        self.server = await serve_udp(self.air, "127.0.0.1", 0)
        self.port = self.server.port
        await self.hub.start()
        self._client = await RawNode.joined(self.air, CLIENT_IEEE,
                                            aps_policy=requires_aps_security)
        return self

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.stop()
        await self.hub.stop()
        self.server.close()

    def meter_nwk(self, ieee: str) -> int | None:
        """The meter's NWK address, as the coordinator knows it (from its announce)."""
        try:
            return int(self.hub.app.get_device(ieee=zt.EUI64.convert(ieee)).nwk)
        except KeyError:
            return None

    async def read_attributes(self, ieee: str, cluster: int, attrs: list[int],
                              timeout: float = 5.0) -> dict[int, Any] | None:
        """A Read Attributes over the air to the meter's SE endpoint; the records zigpy
        parses from its answer, or None without one."""
        nwk = self.meter_nwk(ieee)
        client = self._client
        if nwk is None or client is None:
            return None
        meter = int(ieee.replace(":", ""), 16)
        client.know(nwk, meter)
        secured = requires_aps_security(0x0109, cluster)
        if secured and meter not in client.node.state.link_keys:
            try:
                await client.request_link_key(meter, timeout)
            except (TimeoutError, SecurityError, DeliveryFailed):
                return None
        self._tsn = (self._tsn + 1) & 0xFF
        tsn = self._tsn
        hdr = foundation.ZCLHeader.general(tsn, foundation.GeneralCommand.Read_Attributes)
        payload = hdr.serialize() + b"".join(a.to_bytes(2, "little") for a in attrs)
        client.received.clear()
        try:
            await client.send(nwk, cluster, payload)
            ind = await client.wait_for(lambda i: i.src_nwk == nwk and i.cluster == cluster
                                        and len(i.payload) > 2 and i.payload[1] == tsn, timeout)
        except (TimeoutError, SecurityError, DeliveryFailed):  # not up (yet), or not keyed
            if secured:  # the meter may have lost the key (killed before it kept it): anew
                client.node.keys.forget_link_key(meter)
            return None
        rsp_hdr, rest = foundation.ZCLHeader.deserialize(ind.payload)
        if rsp_hdr.command_id != foundation.GeneralCommand.Read_Attributes_rsp:
            return None
        args, extra = foundation.GENERAL_COMMANDS[rsp_hdr.command_id].schema.deserialize(rest)
        assert extra == b""
        return {int(r.attrid): r for r in args.status_records}


class SupervisedMeter:
    """``sep supervise`` with its meter, a process group of their own."""

    def __init__(self, data: Path, han: Han, trust: Path, *, trial_timeout: float,
                 ieee: str = "00:0d:6f:00:00:00:5e:01", log: Path | None = None) -> None:
        self.data = data
        self.han = han
        self.trust = trust
        self.trial_timeout = trial_timeout
        self.ieee = ieee
        self.log_path = log or data.parent / f"{data.name}-supervisor.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.serving_since: float | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> SupervisedMeter:
        cmd = [sys.executable, "-m", "sep.cli", "supervise", "--data", str(self.data),
               "--trial-timeout", str(self.trial_timeout), "--",
               "--device", f"udp://127.0.0.1:{self.han.port}", "--trust", str(self.trust),
               "--ota-query-interval", "1", "--ieee", self.ieee]
        self.lines = []
        self.serving_since = None
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
        self._pump = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "a") as log:
            async for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                self.lines.append(line)
                log.write(line + "\n")
                log.flush()
                if "serving SE endpoint" in line:
                    self.serving_since = time.monotonic()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        """SIGKILL to the whole process tree (supervisor, meter): a power cut."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def wait(self) -> None:
        assert self.proc is not None
        await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._pump, 5)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.kill()
        await self.wait()

    # -- what an operator sees -------------------------------------------------------------
    def update_log(self) -> list[dict[str, Any]]:
        try:
            text = (self.data / "update-log.jsonl").read_text()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def steps(self) -> list[str]:
        return [e.get("step", "") for e in self.update_log()]

    def version(self) -> dict[str, Any]:
        out = subprocess.run([str(BIN / "sep"), "version", "--data", str(self.data), "--json"],
                             capture_output=True, text=True, timeout=60, check=True)
        return json.loads(out.stdout)

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "sep"), "check", "--data", str(self.data)],
                              capture_output=True, text=True, timeout=120)

    def boot(self) -> dict[str, Any]:
        try:
            return json.loads((self.data / "slots" / "boot.json").read_text())
        except (OSError, ValueError):
            return {}

    def runs(self, version: int) -> bool:
        """The meter runs ``version``, confirmed (not on trial): what ``sep version`` would
        say, read from the slots directly (cheap enough to poll)."""
        boot = self.boot()
        active = boot.get("active")
        if not active or active == "factory" or boot.get("trial"):
            return version == OLD and not boot.get("trial")
        try:
            meta = json.loads((self.data / "slots" / active / "meta.json").read_text())
        except (OSError, ValueError):
            return False
        return meta.get("file_version") == version
