"""The staged download's fsyncs run on the sink's own thread, in order, and whatever reads
or restarts the download waits for them: the record read back (plain json) is the last
offset flushed, and never past the bytes in the data file."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from sep.ota.client import ImageIdent
from sep.ota.staging import FileSink


def test_flush_fsyncs_off_the_calling_thread_and_in_order(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    threads: list[str] = []

    def fsync(fd: int) -> None:
        threads.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    sink = FileSink(tmp_path / "ota")
    sink.begin(ImageIdent(0x1234, 1, 0x00010001, 64 * 1024))
    threads.clear()  # begin() writes the first record itself
    for page in range(16):
        sink.write(page * 4096, bytes([page]) * 4096)
        sink.flush()
    sink.close()  # waits for the thread
    assert threads and all(name.startswith("ota-sync") for name in threads), set(threads)
    record = json.loads(sink.state_path.read_bytes())
    assert record["offset"] == 16 * 4096 == sink.data_path.stat().st_size
    state = FileSink(tmp_path / "ota").state()
    assert state is not None and state.offset == 16 * 4096


def test_a_failed_sync_never_records_past_it(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sink = FileSink(tmp_path / "ota")
    sink.begin(ImageIdent(0x1234, 1, 0x00010001, 3 * 4096))
    sink.write(0, b"a" * 4096)
    sink.flush()
    sink.close()
    sink = FileSink(tmp_path / "ota")
    assert sink.state().offset == 4096  # type: ignore[union-attr]
    real_fsync, calls = os.fsync, []

    def failing(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    sink.write(4096, b"b" * 4096)
    sink.flush()  # its data fsync fails: no record of 8192
    sink.write(8192, b"c" * 4096)
    sink.flush()  # follows a failed flush: records nothing either
    sink.close()
    record = json.loads(sink.state_path.read_bytes())
    assert record["offset"] == 4096
