"""The emulated NCP's non-volatile memory: network, keys, counters, tokens (sans-IO + JSON).

A real stick keeps these in flash (NVM3 tokens) so that after a reset ``networkInit``
brings the same network back; the emulator keeps them in one JSON file. Frame counters
are written lazily by real stacks and bumped on boot so that a counter is never reused
after a power cut; :meth:`NcpState.load` does the same.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from pathlib import Path
from typing import Any

import bellows.types as bt

FRAME_COUNTER_BOOT_JUMP = 4096  # what EmberZNet adds to its stored frame counters on boot
UNSET_EUI64 = "ff:ff:ff:ff:ff:ff:ff:ff"
#: what the stack's NV tokens can hold (a value outside cannot be sent to the host)
RANGES = {"pan_id": (0, 0xFFFF), "channel": (0, 26), "channels": (0, 0xFFFFFFFF),
          "tx_power": (-128, 127), "nwk_update_id": (0, 0xFF), "nwk_manager_id": (0, 0xFFFF),
          "security_bitmask": (0, 0xFFFF), "network_key_seq": (0, 0xFF),
          "nwk_frame_counter": (0, 0xFFFFFFFF), "aps_frame_counter": (0, 0xFFFFFFFF),
          "boot_counter": (0, 0xFFFFFFFF)}


def random_eui64() -> str:
    """An EUI-64 under the Silicon Labs OUI 00:0d:6f (printed most significant first)."""
    return str(bt.EUI64(secrets.token_bytes(5) + bytes([0x6F, 0x0D, 0x00])))


@dataclasses.dataclass
class LinkKey:
    ieee: str
    key: str  # 32 hex digits
    tx_counter: int = 0
    rx_counter: int = 0


@dataclasses.dataclass
class NcpState:
    """Everything the NCP remembers across resets and restarts."""

    eui64: str = dataclasses.field(default_factory=random_eui64)
    # A custom EUI-64 written by the host (NV3 RESTORED_EUI64): used from the next reset.
    restored_eui64: str | None = None
    formed: bool = False  # on a network (formed it as coordinator, or joined it as router)
    node_type: str = "coordinator"  # "coordinator" (formNetwork) or "router" (joinNetwork)
    pan_id: int = 0xFFFF
    extended_pan_id: str = UNSET_EUI64
    channel: int = 11
    channels: int = 0x07FFF800
    tx_power: int = 8
    nwk_update_id: int = 0
    nwk_manager_id: int = 0x0000
    security_bitmask: int = 0  # EmberInitialSecurityBitmask given before forming
    network_key: str = "00" * 16
    network_key_seq: int = 0
    nwk_frame_counter: int = 0
    tc_link_key: str = "00" * 16  # the preconfigured (global or hashed) TC link key
    tc_eui64: str = UNSET_EUI64
    aps_frame_counter: int = 0
    link_keys: list[LinkKey] = dataclasses.field(default_factory=list)
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)  # NV3 key -> hex value
    boot_counter: int = 0
    # the stack's own tables below EZSP (radios.state.NodeState as JSON): incoming frame
    # counters, address map, devices, bindings
    radio: dict[str, Any] | None = None

    # -- identity ---------------------------------------------------------------------
    @property
    def ieee(self) -> bt.EUI64:
        return bt.EUI64.convert(self.restored_eui64 or self.eui64)

    def boot(self) -> None:
        """A reset: counters jump, a written custom EUI-64 takes effect."""
        self.boot_counter += 1
        if self.formed:
            self.nwk_frame_counter += FRAME_COUNTER_BOOT_JUMP
            self.aps_frame_counter += FRAME_COUNTER_BOOT_JUMP

    def factory_reset(self, *, keep_frame_counter: bool = False) -> None:
        """``tokenFactoryReset``: forget the network; the EUI-64 stays."""
        fresh = NcpState(eui64=self.eui64, restored_eui64=self.restored_eui64,
                         boot_counter=self.boot_counter)
        if keep_frame_counter:
            fresh.nwk_frame_counter = self.nwk_frame_counter
            fresh.aps_frame_counter = self.aps_frame_counter
        self.__dict__.update(fresh.__dict__)

    # -- persistence --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NcpState:
        """The state a document holds; ValueError naming the field that is wrong (a field
        of another type than its default's, an EUI-64 or key that is not one)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        fresh = cls(eui64=UNSET_EUI64)
        for name, value in values.items():
            want = type(getattr(fresh, name))
            if name == "node_type" and value not in ("coordinator", "router"):
                raise ValueError(f"node_type must be coordinator or router, not {value!r}"[:200])
            if name in ("restored_eui64", "radio") and value is None:
                continue
            if name == "restored_eui64":
                want = str
            if name == "radio":  # the stack's NodeState as JSON (radios.state reads it)
                want = dict
            if type(value) is not want:
                raise ValueError(f"{name} must be {want.__name__}, not {value!r}"[:200])
            low, high = RANGES.get(name, (value, value)) if want is int else (0, 0)
            if want is int and not low <= value <= high:
                raise ValueError(f"{name} must be {low}..{high}, not {value}")
        try:
            for name in ("eui64", "restored_eui64", "extended_pan_id", "tc_eui64"):
                if values.get(name) is not None:
                    bt.EUI64.convert(values[name])
            for name in ("network_key", "tc_link_key"):
                if name in values and len(bytes.fromhex(values[name])) != 16:
                    raise ValueError(f"{name} is not 16 bytes")
            values["link_keys"] = [LinkKey(**k) for k in values.get("link_keys", [])]
            for key in values["link_keys"]:
                bt.EUI64.convert(key.ieee)
                if len(bytes.fromhex(key.key)) != 16:
                    raise ValueError("a link key is not 16 bytes")
            if not all(isinstance(k, str) and isinstance(v, str) and bytes.fromhex(v) is not None
                       for k, v in values.get("tokens", {}).items()):
                raise ValueError("tokens must map names to hex")
        except (TypeError, ValueError, AttributeError, AssertionError) as exc:  # zigpy asserts
            raise ValueError(str(exc)[:200] or type(exc).__name__) from None
        return cls(**values)

    @classmethod
    def load(cls, path: Path | None, *, ieee: str | None = None) -> NcpState:
        """The state in ``path`` (booted once), else a fresh one. ValueError naming the
        file when it is not an NCP state (a stick's NV memory is not silently wiped)."""
        if path is not None and path.exists():
            try:
                state = cls.from_json(json.loads(path.read_text(encoding="utf-8")))
            except ValueError as exc:  # JSON, UTF-8 or a field
                raise ValueError(f"{path}: not an NCP state: {exc}") from None
            state.boot()
            return state
        return cls(eui64=ieee) if ieee else cls()

    def save(self, path: Path | None) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True))
        os.replace(tmp, path)
