"""The small supervisor `sep meter` runs under: start the active slot, trial, revert.

``sep supervise --data DIR [meter options]`` loops:

1. :meth:`SlotManager.choose_boot` picks the slot (reverting an unconfirmed trial, skipping
   corrupt slots, falling back to the factory image = the installed package);
2. runs ``python SLOT/app.pyz meter ... --file-version V --slot S`` (or the installed
   ``sep meter`` for the factory image);
3. on exit code :data:`EXIT_ACTIVATE` the meter has activated a new slot: boot again;
   on 0 it was asked to stop: stop; any other exit during a trial: revert and boot again;
   any other exit otherwise: the watchdog's last resort, restart after a pause.

On a real device the same roles are a bootloader (MCUboot) with two flash banks, the
application confirming the image after its self-test, and a hardware watchdog.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sep.firmware.slots import FACTORY, SlotManager

LOGGER = logging.getLogger(__name__)

EXIT_ACTIVATE = 75  # "a new slot is active: boot it"
MAX_CRASHES = 5  # crashes in a row (outside trials) before the supervisor gives up


def slot_command(data_dir: Path, slot: str, file_version: int | None,
                 meter_args: list[str], python: str = sys.executable) -> list[str]:
    if slot == FACTORY:
        cmd = [python, "-m", "sep.cli", "meter"]
    else:
        cmd = [python, str(data_dir / "slots" / slot / "app.pyz"), "meter"]
    cmd += [*meter_args, "--data", str(data_dir), "--slot", slot]
    if file_version is not None:
        cmd += ["--file-version", str(file_version)]
    return cmd


def child_env() -> dict[str, str]:
    """The meter's environment: systemd's watchdog is the meter's to feed (with
    NotifyAccess=all), so WATCHDOG_PID (the supervisor's pid) is not passed on."""
    env = dict(os.environ)
    env.pop("WATCHDOG_PID", None)
    return env


def record(data_dir: Path, **details: object) -> None:
    """A SUPERVISOR_RESTART in the meter's event log (the meter is not running then)."""
    from sep.store import Store

    try:
        store = Store.open(data_dir)
        try:
            store.append_event("SUPERVISOR_RESTART", **details)
        finally:
            store.close()
    except Exception:  # noqa: BLE001 - the supervisor keeps the meter running regardless
        LOGGER.exception("supervisor: could not record the restart in the event log")


def _wait(child: subprocess.Popen[bytes], slots: SlotManager, trial_timeout: float,
          trial_slot: str | None) -> int | None:
    """Wait for the child; None when its trial was not confirmed in time (child killed).

    The deadline binds only a child started on trial (``trial_slot``: the slot it runs), and
    only until that slot is confirmed. A meter that has run a while and then activates a new
    slot is on trial from its *next* start: it is about to exit with
    :data:`EXIT_ACTIVATE`, and its own uptime says nothing about the new image."""
    deadline = time.monotonic() + trial_timeout
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if trial_slot is None:
            continue
        state = slots.boot_state()
        if not state.trial or state.active != trial_slot:
            trial_slot = None  # confirmed (or no longer the slot it started as): not on trial
            continue
        if time.monotonic() > deadline:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            return None


def _say(text: str) -> None:
    print(text, flush=True)  # whoever reads our stdout (hubsim's demo) sees each line at once


def supervise(data_dir: Path, meter_args: list[str], *, log=_say,
              trial_timeout: float = 120.0) -> int:
    slots = SlotManager(data_dir)
    crashes = 0
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    while True:
        slot, info, events = slots.choose_boot()
        for event in events:
            log(f"supervisor: {event}")
        version = info.file_version if info else None
        cmd = slot_command(data_dir, slot, version, meter_args)
        state = slots.boot_state()
        log(f"supervisor: starting slot {slot}"
            + (f" (version 0x{version:08X})" if version is not None else " (factory)")
            + (" on trial" if state.trial else ""))
        child = subprocess.Popen(cmd, env=child_env())
        rc = _wait(child, slots, trial_timeout, slot if state.trial else None)
        if rc is None:
            slots.revert("trial slot did not confirm in time")
            log(f"supervisor: slot {slot} did not confirm within {trial_timeout:.0f} s: reverted")
            record(data_dir, slot=slot, exit_code=None, action="revert",
                   reason=f"trial not confirmed within {trial_timeout:.0f} s")
            continue
        if stopping or rc == 0:
            return 0 if rc in (0, -signal.SIGINT, -signal.SIGTERM) else rc
        if rc == EXIT_ACTIVATE:
            crashes = 0
            record(data_dir, slot=slot, exit_code=rc, action="boot the activated slot")
            continue
        state = slots.boot_state()
        if state.trial:
            slots.revert(f"trial slot exited with {rc}")
            log(f"supervisor: slot {slot} failed its trial (exit {rc}): reverted")
            record(data_dir, slot=slot, exit_code=rc, action="revert", reason="trial failed")
            continue
        crashes += 1
        log(f"supervisor: meter exited with {rc} ({crashes} in a row)")
        if crashes >= MAX_CRASHES:
            log("supervisor: giving up")
            record(data_dir, slot=slot, exit_code=rc, action="give up", crashes=crashes)
            return 1
        record(data_dir, slot=slot, exit_code=rc, action="restart", crashes=crashes)
        time.sleep(min(2 ** crashes, 30))
