"""An append-only JSON-lines log protected like the event log (the firmware update log).

Every line is a JSON object with two extra fields: ``seq`` (1, 2, 3... with no gap) and
``mac``, an HMAC-SHA256 under the meter's store key (``DATA/store.key``) over the
previous line's MAC and the line's own canonical content. Editing, removing or reordering
a line breaks the chain. A head file next to the log (``NAME.head``, MACed as well) keeps
the last sequence number and MAC, so lines cut off the end are detected too. A line is
written and fsynced before the head, so a power cut between them leaves one valid line
beyond the head (fine); a torn, unterminated last line is cut off at the next append.

Lines without ``seq``/``mac`` at the start of a log were written before the log was
protected: they are reported as unprotected, not as tampering. Readers that do not verify
see ordinary JSON objects.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger(__name__)

ZERO = bytes(32)


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ChainedLog:
    def __init__(self, path: Path, key: bytes) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_suffix(".head")
        self._key = key

    @classmethod
    def open(cls, data_dir: Path, name: str = "update-log.jsonl") -> ChainedLog:
        from sep.store.db import store_key

        return cls(Path(data_dir) / name, store_key(Path(data_dir)))

    def _mac(self, prev: bytes, entry: dict[str, Any]) -> bytes:
        return hmac.new(self._key, prev + _canonical(entry), hashlib.sha256).digest()

    def _head_tag(self, seq: int, mac: str) -> str:
        return hmac.new(self._key, b"head" + str(seq).encode() + mac.encode(),
                        hashlib.sha256).hexdigest()

    # -- writing ----------------------------------------------------------------------------
    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append ``entry`` (a JSON object); returns the line as written."""
        seq, prev = self._last()
        line = {k: v for k, v in entry.items() if k not in ("seq", "mac")}
        line["seq"] = seq + 1
        mac = self._mac(prev, line)
        line["mac"] = mac.hex()
        with open(self.path, "ab") as f:
            f.write(_canonical(line) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        head = {"seq": line["seq"], "mac": line["mac"]}
        head["tag"] = self._head_tag(head["seq"], head["mac"])
        _write_atomic(self.head_path, json.dumps(head).encode())
        return line

    def _last(self) -> tuple[int, bytes]:
        """(seq, mac) of the last complete protected line; cuts a torn tail off."""
        if not self.path.exists():
            return 0, ZERO
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            LOGGER.warning("%s: cutting off a torn last line (%d bytes)", self.path,
                           len(data) - cut)
            with open(self.path, "r+b") as f:
                f.truncate(cut)
            data = data[:cut]
        for raw in reversed(data.splitlines()):
            try:
                doc = json.loads(raw)
                return int(doc["seq"]), bytes.fromhex(doc["mac"])
            except (ValueError, KeyError, TypeError):
                continue
        return 0, ZERO

    # -- reading ------------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """Every complete line as a JSON object (not verified)."""
        out = []
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        for raw in lines:
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        return out

    def verify(self) -> tuple[int, list[str]]:
        """(lines checked, problems); no problems means intact."""
        problems: list[str] = []
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            lines.pop()  # a torn, unterminated tail: a power cut while writing, not a record
        prev, expected, legacy, checked = ZERO, 1, True, 0
        last_mac = ""
        for number, raw in enumerate(lines, 1):
            checked += 1
            try:
                doc = json.loads(raw)
                if not isinstance(doc, dict):
                    raise ValueError("not an object")
            except ValueError:
                problems.append(f"line {number}: not a JSON object (damaged)")
                legacy = False
                continue
            if "mac" not in doc and "seq" not in doc:
                if not legacy:
                    problems.append(f"line {number}: no MAC after protected lines (inserted)")
                continue
            legacy = False
            mac = doc.pop("mac", None)
            seq = doc.get("seq")
            if seq != expected:
                problems.append(f"line {number}: sequence {seq}, expected {expected} "
                                "(lines removed, added or reordered)")
            try:
                good = hmac.compare_digest(self._mac(prev, doc).hex(), str(mac))
            except TypeError:
                good = False
            if not good:
                problems.append(f"line {number}: MAC mismatch (altered, or its predecessor "
                                "was)")
            prev = bytes.fromhex(mac) if isinstance(mac, str) and len(mac) == 64 else ZERO
            last_mac = str(mac)
            expected = (seq if isinstance(seq, int) else expected) + 1
        problems += self._verify_head(expected - 1, lines, last_mac)
        return checked, problems

    def _verify_head(self, last_seq: int, lines: list[bytes], last_mac: str) -> list[str]:
        try:
            head = json.loads(self.head_path.read_text())
            seq, mac, tag = int(head["seq"]), str(head["mac"]), str(head["tag"])
        except FileNotFoundError:
            return [f"{self.head_path.name} is missing (log removed or replaced?)"] \
                if last_seq else []
        except (ValueError, KeyError, TypeError):
            return [f"{self.head_path.name} is damaged"]
        if not hmac.compare_digest(self._head_tag(seq, mac), tag):
            return [f"{self.head_path.name}: MAC mismatch (altered)"]
        if seq > last_seq:
            return [f"the log ends at {last_seq} but its head says {seq}: lines removed"]
        for raw in lines:  # the line the head names must be that line
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("seq") == seq:
                if doc.get("mac") != mac:
                    return [f"line with sequence {seq} is not the one the head recorded"]
                return []
        return [] if seq == 0 else [f"the head's line {seq} is missing"]
