"""Staging a download on disk so that a power cut loses at most the unflushed tail.

``DIR/download.bin`` holds the bytes, ``DIR/download.json`` the image identity and the
*durable* offset. :meth:`FileSink.flush` fsyncs the data first, then replaces the JSON
atomically (write, fsync, rename, fsync the directory), so the recorded offset never
runs ahead of bytes that are really on disk. On resume the data file is cut back to the
recorded offset: a torn tail is thrown away and fetched again. The record carries a CRC-32
of its content (``sep.store.checked``): a rotten record is not used (the download starts
again), never trusted for an offset.

The fsyncs (three per flush: the data, the record, its directory; 4-8 ms each here) run
on a thread of the sink's own, in order, so a download does not stall the event loop at
every page; whatever opens, reads, restarts or deletes the files first waits for them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
from pathlib import Path

from sep.firmware.fileio import write_atomic
from sep.ota.client import DownloadState, ImageIdent
from sep.store.checked import seal, unseal

LOGGER = logging.getLogger(__name__)


class FileSink:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_path = self.dir / "download.bin"
        self.state_path = self.dir / "download.json"
        self._f = None
        self._ident: ImageIdent | None = None
        self._durable = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ota-sync")
        self._last: concurrent.futures.Future[None] | None = None

    def _settle(self) -> None:
        """Wait for the flushes handed to the thread (they run in order)."""
        if self._last is not None:
            last, self._last = self._last, None
            try:
                last.result()
            except OSError as exc:  # the record stays at the offset before: safe
                LOGGER.error("download: could not make the staged bytes durable: %s", exc)

    def state(self) -> DownloadState | None:
        self._settle()
        try:
            doc = unseal(self.state_path.read_bytes(), "ota/download.json")
            ident = ImageIdent(**doc["ident"])
            offset = doc["offset"]
            numbers = (ident.manufacturer, ident.image_type, ident.file_version, ident.size,
                       offset)
            if any(type(n) is not int or n < 0 for n in numbers) or offset > ident.size:
                raise ValueError("not a download state")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            LOGGER.error("download record not used, the download starts again: %s", exc)
            return None
        if not self.data_path.exists() or self.data_path.stat().st_size < offset:
            return None  # the bytes the record promises are not there: start again
        self._open(ident, offset)
        return DownloadState(ident, offset)

    def _open(self, ident: ImageIdent, offset: int) -> None:
        self._settle()
        if self._f is not None:
            self._f.close()
        self._f = open(self.data_path, "r+b" if self.data_path.exists() else "w+b")  # noqa: SIM115
        self._f.truncate(offset)
        self._f.seek(offset)
        self._ident = ident
        self._durable = offset

    def begin(self, ident: ImageIdent) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.data_path.unlink()
        self._open(ident, 0)
        self._record(0)

    def write(self, offset: int, data: bytes) -> None:
        assert self._f is not None, "begin() or state() first"
        if self._f.tell() != offset:
            self._f.seek(offset)
        self._f.write(data)

    def flush(self) -> int:
        """Hand the bytes written so far to the thread to make durable (the data, then the
        record of their offset); returns the offset that is durable now."""
        assert self._f is not None and self._ident is not None
        self._f.flush()  # into the OS: a crash of this process no longer loses them
        fd, offset = self._f.fileno(), self._f.tell()
        previous = self._last

        def sync() -> None:
            if previous is not None:
                previous.result()  # in order: never record past a flush that failed
            os.fsync(fd)
            self._record(offset)

        self._last = self._pool.submit(sync)
        return self._durable

    def _record(self, offset: int) -> None:
        assert self._ident is not None
        doc = {"ident": dataclasses.asdict(self._ident), "offset": offset}
        write_atomic(self.state_path, seal(doc))
        self._durable = offset

    @property
    def durable_offset(self) -> int:
        """The offset on disk, once the flushes handed to the thread are done."""
        self._settle()
        return self._durable

    def read(self) -> bytes:
        self._settle()
        return self.data_path.read_bytes()

    def close(self) -> None:
        self._settle()
        if self._f is not None:
            self._f.close()
            self._f = None

    def discard(self) -> None:
        self.close()
        for path in (self.data_path, self.state_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._ident = None
        self._durable = 0
