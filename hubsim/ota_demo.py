"""`hubsim demo --ota FILE --trust DIR`: upgrade the demo meter over the virtual air.

The meter runs as it would on a device: in its own process under the A/B supervisor
(``sep supervise``), joined to this process's air over loopback UDP. The hub serves FILE;
the meter finds the server, downloads, verifies, stages, activates on trial, restarts and
confirms after its health check. Success is the meter running the new version with the
trial confirmed; anything else exits 1 with the reason from the meter's update log.

Only this run counts: update-log entries already in the data directory are an earlier
run's. A trial boot that fails is reverted by the supervisor, and the meter never installs
that version again (``failed`` in boot.json): the demo reports it. A meter that already
runs the image's version (confirmed) has nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from hubsim.hub import CommsHub
from hubsim.ota_server import OtaServerCore, load_image
from radios.air import VirtualAir
from radios.udp import serve_udp

FAIL_STEPS = ("refused", "rejected", "apply failed", "aborted", "health check failed")


def read_log(data: Path) -> list[dict]:
    """The update log's entries; a line a power cut tore is skipped, not the whole log."""
    try:
        text = (data / "update-log.jsonl").read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def boot_state(data: Path) -> dict:
    try:
        return json.loads((data / "slots" / "boot.json").read_text())
    except (OSError, ValueError):
        return {}


def runs_version(data: Path, version: int) -> bool:
    """The meter's active slot holds ``version`` and is confirmed (not on trial)."""
    state = boot_state(data)
    active = state.get("active")
    return (bool(active) and active != "factory" and not state.get("trial")
            and slot_version(data, active) == version)


def slot_version(data: Path, slot: str) -> int | None:
    try:
        return int(json.loads((data / "slots" / slot / "meta.json").read_text())["file_version"])
    except (OSError, ValueError, KeyError, TypeError, OverflowError):
        return None


async def run_ota_demo(image_path: Path, trust: Path, *, data_dir: Path | None = None,
                       timeout: float = 600.0, console: Console | None = None) -> tuple[int, str]:
    console = console or Console(stderr=True)
    try:
        image = load_image(image_path)
    except (OSError, ValueError) as exc:
        return 2, f"--ota {image_path}: cannot read it: {exc}"
    if not trust.is_dir():
        return 2, f"--trust {trust}: not a folder (make one with `sep ota keygen DIR`)"
    if data_dir is not None and runs_version(data_dir, image.file_version):
        return 0, (f"meter already runs version 0x{image.file_version:08X} "
                   f"(slot {boot_state(data_dir).get('active')}): nothing to upgrade")
    if image.file_version == running_version(data_dir):
        # the OTA server offers nothing for it (an older image is offered, and refused by
        # the meter, which says so): without this the download sat at 0 kB forever
        return 2, (f"--ota {image_path}: version 0x{image.file_version:08X} is the one the "
                   "meter runs already (build one with a higher --file-version)")
    scratch = data_dir is None
    data = data_dir or Path(tempfile.mkdtemp(prefix="sep-ota-demo-"))
    data.mkdir(parents=True, exist_ok=True)
    try:
        return await _run(image, trust, data, timeout, console)
    finally:
        if scratch:
            shutil.rmtree(data, ignore_errors=True)  # a scratch meter leaves nothing behind


def running_version(data_dir: Path | None) -> int:
    """The firmware version the demo meter runs: its active slot's once confirmed (a slot
    still on trial is reverted if it does not confirm), else the factory image's (this
    package)."""
    from sep.app import APP_FILE_VERSION

    if data_dir is not None:
        state = boot_state(data_dir)
        active = state.get("active")
        if active and active != "factory" and not state.get("trial"):
            version = slot_version(data_dir, active)
            if version is not None:
                return version
    return APP_FILE_VERSION


async def _run(image, trust: Path, data: Path, timeout: float,
               console: Console) -> tuple[int, str]:
    earlier = len(read_log(data))  # entries of earlier runs in this data directory
    air = VirtualAir()
    core = OtaServerCore([image], upgrade_delay=0)
    hub = CommsHub(air=air, ota=core)
    server = await serve_udp(air, "127.0.0.1", 0)
    await hub.start()
    cmd = [sys.executable, "-m", "sep.cli", "supervise", "--data", str(data), "--trial-timeout",
           "60", "--", "--device", f"udp://127.0.0.1:{server.port}", "--trust", str(trust),
           "--ota-query-interval", "5", "--ieee", "00:0d:6f:00:00:00:07:a1"]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []

    async def pump() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip())

    pumper = asyncio.create_task(pump())
    size = len(image.data)
    started = time.monotonic()
    result: tuple[int, str] = (1, "timed out")
    progress = Progress(TextColumn("[cyan]OTA"), BarColumn(), DownloadColumn(),
                        TimeRemainingColumn(), console=console, transient=True)
    try:
        with progress:
            task = progress.add_task("download", total=size)
            while time.monotonic() - started < timeout:
                progress.update(task, completed=min(core.highest_offset, size))
                log = read_log(data)[earlier:]  # this run's steps
                if (runs_version(data, image.file_version)
                        and any(e.get("step") == "confirmed" for e in log)):
                    result = (0, f"meter runs version 0x{image.file_version:08X} (slot "
                                 f"{boot_state(data).get('active')}), confirmed after its "
                                 "health check")
                    break
                failed = [e for e in log if e.get("step") in FAIL_STEPS]
                if failed:
                    e = failed[-1]
                    result = (1, f"{e['step']}: {e.get('reason') or e.get('detail') or ''}".strip())
                    break
                if any("reverted" in line for line in lines):
                    why = [e for e in log if e.get("step") == "health check failed"]
                    result = (1, "reverted after a failed trial boot"
                              + (f" ({why[-1].get('detail')})" if why else ""))
                    break
                if proc.returncode is not None:
                    result = (1, f"meter supervisor exited with {proc.returncode}")
                    break
                await asyncio.sleep(0.2)
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 15)
            if proc.returncode is None:
                proc.kill()
        pumper.cancel()
        await hub.stop()
        server.close()
    return result
