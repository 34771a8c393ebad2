"""The OTA Upgrade cluster, client side (ZCL r8 11), sans-IO.

The meter asks the HAN's OTA server for images and downloads them. This object takes
decoded server commands and the time, and returns what to do: frames to send to the
server and effects for the shell (verify the stored image, apply it at a time, persist).

Robustness beyond the spec's minimum, because real Zigbee OTA is slow and fragile:
- Image Page Requests stream a page of blocks per request; Image Block Requests are the
  fallback when the server does not answer pages (or ``page_size=0``).
- A timeout retries at the *same* offset with exponential backoff; the download never
  goes back to offset 0 because a block was lost.
- Data is written to a :class:`DownloadSink` and made durable at page boundaries; after a
  restart the client resumes from the durable offset of the same image.
- WAIT_FOR_DATA (request time / minimum block period) and MinimumBlockPeriod are honoured.
- The finished image is verified by the shell from *storage*, never from a streaming hash.
- Upgrade End Response: upgrade time now / at a time (relative to the server's current
  time) / 0xFFFFFFFF wait for a further response.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

import zigpy.types as t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Ota

LOGGER = logging.getLogger(__name__)
Status = foundation.Status

CMD_QUERY_NEXT_IMAGE = 0x01
CMD_IMAGE_BLOCK = 0x03
CMD_IMAGE_PAGE = 0x04
CMD_UPGRADE_END = 0x06
RSP_IMAGE_NOTIFY = 0x00
RSP_QUERY_NEXT_IMAGE = 0x02
RSP_IMAGE_BLOCK = 0x05
RSP_UPGRADE_END = 0x07

UPGRADE_TIME_WAIT = 0xFFFFFFFF


class UpgradeStatus(enum.IntEnum):
    """ImageUpgradeStatus attribute (0x0006)."""

    NORMAL = 0
    DOWNLOAD_IN_PROGRESS = 1
    DOWNLOAD_COMPLETE = 2
    WAITING_TO_UPGRADE = 3
    COUNT_DOWN = 4
    WAIT_FOR_MORE = 5


@dataclasses.dataclass(frozen=True)
class ImageIdent:
    manufacturer: int
    image_type: int
    file_version: int
    size: int


@dataclasses.dataclass
class DownloadState:
    ident: ImageIdent
    offset: int  # durable bytes


class DownloadSink(Protocol):
    """Where the image goes (e.g. the inactive A/B slot). Offsets must be durable."""

    def state(self) -> DownloadState | None: ...

    def begin(self, ident: ImageIdent) -> None: ...

    def write(self, offset: int, data: bytes) -> None: ...

    def flush(self) -> int:
        """Make everything written durable; returns the durable offset."""
        ...

    def discard(self) -> None: ...


@dataclasses.dataclass
class Frame:
    """A client→server OTA command for the shell to send."""

    command_id: int
    payload: bytes


@dataclasses.dataclass
class Effect:
    """Work for the shell: ``verify`` (then call :meth:`OtaClient.verified`), ``apply``
    (at ``at``), ``discover`` (find an OTA server), ``log`` (an update-log step)."""

    name: str
    data: dict[str, Any]


Output = Frame | Effect
PreCheck = Callable[[ImageIdent], str | None]  # None = allowed, else the reason


class OtaClient:
    def __init__(self, *, manufacturer: int, image_type: int, current_version: int,
                 sink: DownloadSink, hardware_version: int | None = None,
                 max_data_size: int = 64, page_size: int = 2048, response_spacing_ms: int = 0,
                 query_interval: float = 24 * 3600, timeout: float = 3.0,
                 backoff_max: float = 60.0, precheck: PreCheck | None = None,
                 rng: random.Random | None = None) -> None:
        self.manufacturer = manufacturer
        self.image_type = image_type
        self.current_version = current_version
        self.hardware_version = hardware_version
        self.sink = sink
        self.max_data_size = max_data_size
        self.page_size = page_size
        self.response_spacing_ms = response_spacing_ms
        self.query_interval = query_interval
        self.timeout = timeout
        self.backoff_max = backoff_max
        self.precheck = precheck
        self.rng = rng or random.Random()
        self.server: tuple[int, int] | None = None  # (nwk, endpoint)
        self.upgrade_server_ieee: t.EUI64 | None = None
        self.status = UpgradeStatus.NORMAL
        self.ident: ImageIdent | None = None
        self.offset = 0
        self.next_query_at = 0.0
        self.next_request_at: float | None = None
        self.deadline: float | None = None
        self.retries = 0
        self.min_block_period_ms = 0
        self.use_pages = page_size > 0
        self.page_end = 0
        self.unflushed = 0
        self.apply_at: float | None = None
        self.pending_end_status: int | None = None
        self.refused: str | None = None
        self.timeouts = 0
        self.restarts_from_zero = 0  # stays 0: proof of "never back to offset 0"

    # -- attributes --------------------------------------------------------------------------
    def attributes(self) -> dict[int, Any]:
        return {
            0x0001: self.offset if self.ident else 0xFFFFFFFF,  # FileOffset
            0x0002: self.current_version,  # CurrentFileVersion
            0x0004: self.ident.file_version if self.ident else 0xFFFFFFFF,
            0x0006: int(self.status),
            0x0007: self.manufacturer,
            0x0008: self.image_type,
            0x0009: self.min_block_period_ms,
        }

    # -- driving ---------------------------------------------------------------------------
    def set_server(self, nwk: int, endpoint: int, now: float) -> list[Output]:
        self.server = (nwk, endpoint)
        self.next_query_at = min(self.next_query_at, now)
        return self.tick(now)

    def query_now(self, now: float) -> list[Output]:
        self.next_query_at = now
        return self.tick(now)

    def tick(self, now: float) -> list[Output]:
        out: list[Output] = []
        if self.server is None:
            if now >= self.next_query_at:
                self.next_query_at = now + 30
                out.append(Effect("discover", {}))
            return out
        if self.apply_at is not None and now >= self.apply_at:
            self.apply_at = None
            self.status = UpgradeStatus.COUNT_DOWN
            assert self.ident is not None
            out.append(Effect("apply", {"file_version": self.ident.file_version}))
            return out
        if self.status == UpgradeStatus.NORMAL:
            if now >= self.next_query_at:
                self.next_query_at = now + self.query_interval
                self.deadline = now + self.timeout
                out.append(self._query_next_image())
            return out
        if self.status == UpgradeStatus.DOWNLOAD_IN_PROGRESS:
            if self.next_request_at is not None and now >= self.next_request_at:
                self.next_request_at = None
                out.append(self._request(now))
            elif self.deadline is not None and now >= self.deadline:
                out.extend(self._timed_out(now))
            return out
        if self.status == UpgradeStatus.DOWNLOAD_COMPLETE and self.pending_end_status is not None:
            if self.deadline is not None and now >= self.deadline:
                self.retries += 1
                if self.retries > 5:
                    LOGGER.warning("no Upgrade End Response; the image waits for the server")
                    self.deadline = None
                else:
                    self.deadline = now + self._backoff()
                    out.append(self._upgrade_end(self.pending_end_status))
        return out

    def _backoff(self) -> float:
        return min(self.timeout * (2 ** self.retries), self.backoff_max)

    def _timed_out(self, now: float) -> list[Output]:
        self.timeouts += 1
        self.retries += 1
        if self.use_pages and self.retries >= 3:
            # The server may not serve pages at all: fall back to blocks, same offset.
            self.use_pages = False
        self.deadline = now + self._backoff()
        LOGGER.info("OTA timeout at offset %d (retry %d)", self.offset, self.retries)
        return [self._request(now, keep_deadline=True)]

    # -- requests ----------------------------------------------------------------------------
    def _query_next_image(self) -> Frame:
        fc = 0x01 if self.hardware_version is not None else 0x00
        payload = (t.uint8_t(fc).serialize() + t.uint16_t(self.manufacturer).serialize()
                   + t.uint16_t(self.image_type).serialize()
                   + t.uint32_t(self.current_version).serialize())
        if self.hardware_version is not None:
            payload += t.uint16_t(self.hardware_version).serialize()
        return Frame(CMD_QUERY_NEXT_IMAGE, payload)

    def _ident_fields(self) -> bytes:
        assert self.ident is not None
        return (t.uint16_t(self.ident.manufacturer).serialize()
                + t.uint16_t(self.ident.image_type).serialize()
                + t.uint32_t(self.ident.file_version).serialize())

    def _request(self, now: float, keep_deadline: bool = False) -> Frame:
        assert self.ident is not None
        if not keep_deadline:
            self.deadline = now + self.timeout
        size = min(self.max_data_size, self.ident.size - self.offset)
        if self.use_pages:
            self.page_end = min(self.offset + self.page_size, self.ident.size)
            payload = (t.uint8_t(0).serialize() + self._ident_fields()
                       + t.uint32_t(self.offset).serialize() + t.uint8_t(size).serialize()
                       + t.uint16_t(self.page_end - self.offset).serialize()
                       + t.uint16_t(self.response_spacing_ms).serialize())
            return Frame(CMD_IMAGE_PAGE, payload)
        fc = 0x02 if self.min_block_period_ms else 0x00
        payload = (t.uint8_t(fc).serialize() + self._ident_fields()
                   + t.uint32_t(self.offset).serialize() + t.uint8_t(size).serialize())
        if fc & 0x02:
            payload += t.uint16_t(self.min_block_period_ms).serialize()
        return Frame(CMD_IMAGE_BLOCK, payload)

    def _upgrade_end(self, status: int) -> Frame:
        return Frame(CMD_UPGRADE_END, t.uint8_t(status).serialize() + self._ident_fields())

    # -- responses ---------------------------------------------------------------------------
    def on_command(self, command_id: int, payload: bytes, now: float,
                   *, src: tuple[int, int] | None = None, broadcast: bool = False) -> list[Output]:
        """A server→client OTA command. Malformed payloads raise ValueError (the shell
        answers MALFORMED_COMMAND)."""
        schema = Ota.client_commands[command_id].schema if command_id in Ota.client_commands else None
        if schema is None:
            raise KeyError(command_id)
        args, _rest = schema.deserialize(payload)
        if command_id == RSP_IMAGE_NOTIFY:
            return self._on_notify(args, now, src, broadcast)
        if self.server is not None and src is not None and src[0] != self.server[0]:
            LOGGER.info("OTA command from 0x%04X ignored: not our server", src[0])
            return []
        if command_id == RSP_QUERY_NEXT_IMAGE:
            return self._on_query_response(args, now, src)
        if command_id == RSP_IMAGE_BLOCK:
            return self._on_block(args, now)
        if command_id == RSP_UPGRADE_END:
            return self._on_upgrade_end(args, now)
        return []

    def _on_notify(self, args: Any, now: float, src: tuple[int, int] | None,
                   broadcast: bool) -> list[Output]:
        ptype = int(args.payload_type)
        if ptype >= 1 and int(args.manufacturer_code) not in (self.manufacturer, 0xFFFF):
            return []
        if ptype >= 2 and int(args.image_type) not in (self.image_type, 0xFFFF):
            return []
        if ptype >= 3 and int(args.new_file_version) != 0xFFFFFFFF and int(
                args.new_file_version) <= self.current_version:
            return []
        jitter = int(args.query_jitter)
        if broadcast and not 1 <= jitter <= 100:
            return []
        if broadcast and self.rng.randint(1, 100) > jitter:
            return []
        if self.status != UpgradeStatus.NORMAL:
            return []
        if src is not None and self.server is None:
            self.server = src
        # Spread the HAN's queries a little, as the jitter intends.
        self.next_query_at = now + (self.rng.uniform(0, 1.0) if broadcast else 0)
        return self.tick(now)

    def _on_query_response(self, args: Any, now: float,
                           src: tuple[int, int] | None = None) -> list[Output]:
        self.deadline = None
        if self.status != UpgradeStatus.NORMAL:
            return []
        if args.status != Status.SUCCESS:
            return []  # NO_IMAGE_AVAILABLE / NOT_AUTHORIZED: ask again next interval
        if src is not None:
            # Download from the endpoint that offered the image (a node may answer from
            # another endpoint than the one discovery found, as zigpy does).
            self.server = src
        ident = ImageIdent(int(args.manufacturer_code), int(args.image_type),
                           int(args.file_version), int(args.image_size))
        why = None
        if ident.manufacturer != self.manufacturer or ident.image_type != self.image_type:
            why = "image is for another device"
        elif ident.file_version <= self.current_version:
            why = f"version 0x{ident.file_version:08X} is not newer than 0x{self.current_version:08X}"
        elif self.precheck is not None:
            why = self.precheck(ident)
        if why is not None:
            self.refused = why
            return [Effect("log", {"step": "refused", "file_version": ident.file_version,
                                   "reason": why})]
        self.refused = None
        self.ident = ident
        saved = self.sink.state()
        if saved is not None and saved.ident == ident and 0 < saved.offset <= ident.size:
            self.offset = saved.offset
            step = "resumed"
        else:
            self.sink.begin(ident)
            self.offset = 0
            step = "download started"
        self.status = UpgradeStatus.DOWNLOAD_IN_PROGRESS
        self.retries = 0
        self.use_pages = self.page_size > 0
        out: list[Output] = [Effect("log", {"step": step, "file_version": ident.file_version,
                                            "offset": self.offset, "size": ident.size})]
        if self.offset >= ident.size:
            return out + self._complete()
        out.append(self._request(now))
        return out

    def _on_block(self, args: Any, now: float) -> list[Output]:
        if self.status != UpgradeStatus.DOWNLOAD_IN_PROGRESS or self.ident is None:
            return []
        if args.status == Status.WAIT_FOR_DATA:
            wait = max(0, int(args.request_time) - int(args.current_time))
            if args.minimum_block_period is not None:
                self.min_block_period_ms = int(args.minimum_block_period)
            self.deadline = None
            self.next_request_at = now + wait
            return []
        if args.status == Status.ABORT:
            return self._abort("server aborted the download")
        if args.status != Status.SUCCESS:
            return []
        if (int(args.manufacturer_code), int(args.image_type), int(args.file_version)) != (
                self.ident.manufacturer, self.ident.image_type, self.ident.file_version):
            return []
        offset, data = int(args.file_offset), bytes(args.image_data)
        if offset != self.offset or not data or offset + len(data) > self.ident.size:
            return []  # duplicate, out of order or oversized: wait for what we asked for
        self.sink.write(offset, data)
        self.offset += len(data)
        self.unflushed += len(data)
        self.retries = 0
        if self.offset >= self.ident.size:
            return self._complete()
        if self.unflushed >= 4096:
            self.sink.flush()
            self.unflushed = 0
        if self.use_pages and self.offset < self.page_end:
            self.deadline = now + self.timeout  # more blocks of this page are coming
            return []
        if self.use_pages:
            self.sink.flush()
            self.unflushed = 0
        if self.min_block_period_ms and not self.use_pages:
            self.deadline = None
            self.next_request_at = now + self.min_block_period_ms / 1000
            return []
        return [self._request(now)]

    def _complete(self) -> list[Output]:
        assert self.ident is not None
        self.sink.flush()
        self.unflushed = 0
        self.status = UpgradeStatus.DOWNLOAD_COMPLETE
        self.deadline = None
        return [Effect("log", {"step": "downloaded", "file_version": self.ident.file_version}),
                Effect("verify", {"file_version": self.ident.file_version})]

    def verified(self, ok: bool, reason: str | None, now: float) -> list[Output]:
        """The shell's verdict on the stored image."""
        if self.ident is None or self.status != UpgradeStatus.DOWNLOAD_COMPLETE:
            return []
        self.retries = 0
        self.deadline = now + self.timeout
        if ok:
            self.pending_end_status = Status.SUCCESS
            return [Effect("log", {"step": "verified", "file_version": self.ident.file_version}),
                    self._upgrade_end(Status.SUCCESS)]
        frame = self._upgrade_end(Status.INVALID_IMAGE)
        version = self.ident.file_version
        self._reset()
        self.sink.discard()
        return [Effect("log", {"step": "rejected", "file_version": version,
                               "reason": reason or "invalid image"}), frame]

    def _on_upgrade_end(self, args: Any, now: float) -> list[Output]:
        if self.ident is None or self.status not in (UpgradeStatus.DOWNLOAD_COMPLETE,
                                                     UpgradeStatus.WAITING_TO_UPGRADE):
            return []
        if self.pending_end_status != Status.SUCCESS:
            return []
        if (int(args.manufacturer_code) not in (self.ident.manufacturer, 0xFFFF)
                or int(args.image_type) not in (self.ident.image_type, 0xFFFF)
                or int(args.file_version) not in (self.ident.file_version, 0xFFFFFFFF)):
            return []
        self.deadline = None
        upgrade_time, current_time = int(args.upgrade_time), int(args.current_time)
        if upgrade_time == UPGRADE_TIME_WAIT:
            self.status = UpgradeStatus.WAITING_TO_UPGRADE
            return [Effect("log", {"step": "waiting for upgrade command",
                                   "file_version": self.ident.file_version})]
        delay = max(0, upgrade_time - current_time)
        self.status = UpgradeStatus.WAITING_TO_UPGRADE
        self.apply_at = now + delay
        out: list[Output] = [Effect("log", {"step": "upgrade scheduled", "in_seconds": delay,
                                            "file_version": self.ident.file_version})]
        return out + self.tick(now)

    def _abort(self, reason: str) -> list[Output]:
        version = self.ident.file_version if self.ident else None
        self._reset()
        self.sink.discard()
        return [Effect("log", {"step": "aborted", "file_version": version, "reason": reason})]

    def _reset(self) -> None:
        self.status = UpgradeStatus.NORMAL
        self.ident = None
        self.offset = 0
        self.deadline = None
        self.next_request_at = None
        self.pending_end_status = None
        self.apply_at = None
