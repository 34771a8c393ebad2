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
    formed: bool = False
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
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["link_keys"] = [LinkKey(**k) for k in values.get("link_keys", [])]
        return cls(**values)

    @classmethod
    def load(cls, path: Path | None, *, ieee: str | None = None) -> NcpState:
        """The state in ``path`` (booted once), else a fresh one."""
        if path is not None and path.exists():
            state = cls.from_json(json.loads(path.read_text()))
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
