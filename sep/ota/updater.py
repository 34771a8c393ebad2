"""Applying a downloaded image, and confirming it after a real health check.

Composition of the OTA service (download + verify), the A/B slots and the supervisor:

- ``apply(path, version)``: read the verified image, stage it into the inactive slot
  (re-verifying the stored bytes), activate it on trial and ask the process to exit with
  :data:`sep.ota.supervisor.EXIT_ACTIVATE` so the supervisor boots it.
- ``health_check()`` after start-up: metrology readable and OK, the network up, and the SE
  endpoint answering a Read Attributes of its own Basic cluster. Only then is a trial
  slot confirmed. Every step goes to the update log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zigpy.zcl import foundation

from sep.firmware.slots import SlotError, SlotManager
from sep.metrology.api import MetrologyStatus

LOGGER = logging.getLogger(__name__)


class Updater:
    def __init__(self, app: Any, slots: SlotManager, *,
                 verify: Callable[[Path], tuple[bool, str | None]],
                 request_exit: Callable[[int], None], log: Callable[[dict], None]) -> None:
        self.app = app
        self.slots = slots
        self.verify = verify
        self.request_exit = request_exit
        self.log = log

    async def apply(self, path: Path, version: int) -> None:
        from sep.ota.supervisor import EXIT_ACTIVATE

        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(None, path.read_bytes)
        try:
            slot = await loop.run_in_executor(None, lambda: self.slots.stage(image, version,
                                                                             self.verify))
            await loop.run_in_executor(None, self.slots.activate)
        except SlotError as exc:
            self.log({"time": time.time(), "step": "apply failed", "file_version": version,
                      "reason": str(exc)})
            return
        self.log({"time": time.time(), "step": "activated", "slot": slot,
                  "file_version": version})
        self.request_exit(EXIT_ACTIVATE)

    async def health_check(self) -> tuple[bool, str]:
        reading = await self.app.metrology.read()
        if reading.status != MetrologyStatus.OK:
            return False, f"metrology status {reading.status!r}"
        if self.app.controller.state.node_info.nwk is None:
            return False, "network not up"
        req = foundation.ZCLHeader.general(1, foundation.GeneralCommand.Read_Attributes)
        replies = self.app.endpoint.handle(
            src_nwk=0xFFFE, src_ep=1, dst_ep=self.app.endpoint.endpoint_id, profile_id=0x0109,
            cluster_id=0x0000, data=req.serialize() + b"\x05\x00", broadcast=False,
            now=self.app.clock.now())
        if not replies:
            return False, "SE endpoint did not answer"
        hdr, rest = foundation.ZCLHeader.deserialize(replies[0].data)
        if hdr.command_id != foundation.GeneralCommand.Read_Attributes_rsp or rest[2] != 0:
            return False, "SE endpoint answered with an error"
        return True, "metrology OK, network up, endpoint serving"

    async def confirm_if_healthy(self) -> bool:
        state = self.slots.boot_state()
        if not state.trial:
            return True
        ok, why = await self.health_check()
        if ok:
            self.slots.confirm()
            self.log({"time": time.time(), "step": "confirmed", "slot": state.active,
                      "detail": why})
        else:
            self.log({"time": time.time(), "step": "health check failed", "slot": state.active,
                      "detail": why})
        return ok
