"""A node's non-volatile state, as a stick keeps it in flash: network, keys, counters,
tables (sans-IO values + an integrity-checked JSON file).

Key material at rest is protected like the meter's other configuration: the file is
written atomically (temporary file, fsync, rename) with mode 0600, carries a SHA-256 of
its content, and the previous good copy is kept beside it (``FILE.prev``). A copy whose
checksum does not match is refused and reported, never used. Outgoing frame counters are
stored *ahead* of use (``radios.security.keys.OutgoingCounter``); when only the previous
copy survives, the counters jump by :data:`FALLBACK_COUNTER_JUMP` so that none is reused.

Nothing here is ever logged: ``repr`` of a state shows no keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger(__name__)

FORMAT = "sep-radio-state/1"
FALLBACK_COUNTER_JUMP = 1 << 20


def ieee_hex(ieee: int) -> str:
    return f"{ieee:016x}"


@dataclasses.dataclass
class LinkKeyEntry:
    key: str  # 32 hex digits
    kind: str  # install_code | preconfigured | application | trust_center | cbke
    rx: int = -1  # the highest APS frame counter accepted under this key

    def __repr__(self) -> str:
        return f"LinkKeyEntry(kind={self.kind!r}, rx={self.rx})"


@dataclasses.dataclass
class NodeState:
    """Everything a node remembers across restarts."""

    ieee: int = 0
    logical_type: str = "router"  # coordinator | router | end_device
    joined: bool = False
    pan_id: int = 0xFFFF
    extended_pan_id: int = 0
    channel: int = 11
    nwk: int = 0xFFFE
    parent: int | None = None
    nwk_update_id: int = 0
    tc_ieee: int | None = None
    network_keys: dict[int, str] = dataclasses.field(default_factory=dict, repr=False)
    active_key_seq: int = 0
    # the link key this node joins with (install code or preconfigured): its partner is
    # "the trust centre", whose IEEE is learned from the Transport Key
    join_key: str | None = dataclasses.field(default=None, repr=False)
    join_key_kind: str = "preconfigured"
    link_keys: dict[int, LinkKeyEntry] = dataclasses.field(default_factory=dict, repr=False)
    nwk_tx_reserved: int = 0
    aps_tx_reserved: int = 0
    nwk_rx: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict, repr=False)
    bindings: list[dict[str, int]] = dataclasses.field(default_factory=list)
    # trust centre only
    tc_policy: str = "install_code"
    admitted: dict[int, LinkKeyEntry] = dataclasses.field(default_factory=dict, repr=False)
    devices: dict[int, dict[str, int]] = dataclasses.field(default_factory=dict)
    address_map: dict[int, int] = dataclasses.field(default_factory=dict)  # nwk -> ieee

    # -- JSON ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "ieee": ieee_hex(self.ieee), "logical_type": self.logical_type,
            "joined": self.joined, "pan_id": self.pan_id,
            "extended_pan_id": ieee_hex(self.extended_pan_id), "channel": self.channel,
            "nwk": self.nwk, "parent": self.parent, "nwk_update_id": self.nwk_update_id,
            "tc_ieee": None if self.tc_ieee is None else ieee_hex(self.tc_ieee),
            "network_keys": {str(k): v for k, v in self.network_keys.items()},
            "active_key_seq": self.active_key_seq,
            "join_key": self.join_key, "join_key_kind": self.join_key_kind,
            "link_keys": {ieee_hex(k): dataclasses.asdict(v) for k, v in self.link_keys.items()},
            "nwk_tx_reserved": self.nwk_tx_reserved, "aps_tx_reserved": self.aps_tx_reserved,
            "nwk_rx": {f"{seq}:{ieee_hex(src)}": c for (seq, src), c in self.nwk_rx.items()},
            "bindings": self.bindings,
            "tc_policy": self.tc_policy,
            "admitted": {ieee_hex(k): dataclasses.asdict(v) for k, v in self.admitted.items()},
            "devices": {ieee_hex(k): v for k, v in self.devices.items()},
            "address_map": {str(k): ieee_hex(v) for k, v in self.address_map.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeState:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")

        def ieee(v: str | None) -> int | None:
            return None if v is None else int(v, 16)

        def rx_key(k: str) -> tuple[int, int]:
            seq, _, src = k.partition(":")
            return int(seq), int(src, 16)

        return cls(
            ieee=int(data["ieee"], 16), logical_type=data["logical_type"],
            joined=bool(data["joined"]), pan_id=int(data["pan_id"]),
            extended_pan_id=int(data["extended_pan_id"], 16), channel=int(data["channel"]),
            nwk=int(data["nwk"]), parent=data.get("parent"),
            nwk_update_id=int(data.get("nwk_update_id", 0)), tc_ieee=ieee(data.get("tc_ieee")),
            network_keys={int(k): v for k, v in data["network_keys"].items()},
            active_key_seq=int(data["active_key_seq"]), join_key=data.get("join_key"),
            join_key_kind=data.get("join_key_kind", "preconfigured"),
            link_keys={int(k, 16): LinkKeyEntry(**v) for k, v in data["link_keys"].items()},
            nwk_tx_reserved=int(data["nwk_tx_reserved"]),
            aps_tx_reserved=int(data["aps_tx_reserved"]),
            nwk_rx={rx_key(k): int(v) for k, v in data["nwk_rx"].items()},
            bindings=list(data.get("bindings", [])), tc_policy=data.get("tc_policy", "install_code"),
            admitted={int(k, 16): LinkKeyEntry(**v) for k, v in data.get("admitted", {}).items()},
            devices={int(k, 16): v for k, v in data.get("devices", {}).items()},
            address_map={int(k): int(v, 16) for k, v in data.get("address_map", {}).items()},
        )


class StateFileError(Exception):
    """No good copy of a state file could be read (the reason says why)."""


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class NvFile:
    """The integrity-checked file a node's state lives in (``None``: RAM only)."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = None if path is None else Path(path)
        self.writes = 0
        self.problems: list[str] = []  # what was refused at load, for the log and tests

    @property
    def prev(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".prev")

    def _read(self, path: Path) -> NodeState:
        try:
            doc = json.loads(path.read_text())
            body = doc["state"]
            if _digest(body) != doc["sha256"]:
                raise StateFileError(f"{path.name}: checksum mismatch (the file was altered)")
            return NodeState.from_json(body)
        except StateFileError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"{path.name}: unreadable ({type(exc).__name__})") from exc

    def load(self) -> NodeState | None:
        """The newest good copy, or None when there is none (a new node)."""
        if self.path is None:
            return None
        assert self.prev is not None
        for candidate, fallback in ((self.path, False), (self.prev, True)):
            if not candidate.exists():
                continue
            try:
                state = self._read(candidate)
            except StateFileError as exc:
                self.problems.append(str(exc))
                LOGGER.error("radio state: %s; not used", exc)
                continue
            if fallback:
                LOGGER.warning("radio state: using the previous copy; frame counters jump ahead")
                state.nwk_tx_reserved += FALLBACK_COUNTER_JUMP
                state.aps_tx_reserved += FALLBACK_COUNTER_JUMP
            return state
        return None

    def save(self, state: NodeState) -> None:
        if self.path is None:
            return
        assert self.prev is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = state.to_json()
        data = json.dumps({"sha256": _digest(body), "state": body}, indent=1, sort_keys=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.path.exists():
            with contextlib.suppress(OSError):
                os.replace(self.path, self.prev)
        os.replace(tmp, self.path)
        self.writes += 1
