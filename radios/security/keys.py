"""The key table and frame counters of one node (sans-IO, on :class:`radios.state.NodeState`).

- Network keys by sequence number: the active one and, after a Transport Key from the
  trust centre, the next one; both are accepted on receive until Switch Key.
- Link keys by partner IEEE, each with its kind (``install_code``, ``preconfigured``,
  ``application``, ``trust_center``, ``cbke``) and the highest APS frame counter accepted
  under it; the join key (install code or preconfigured) stands for "the trust centre"
  until the Transport Key names it.
- Outgoing NWK and APS frame counters never repeat, also across restarts and kill -9:
  counters are reserved ahead in steps of :data:`COUNTER_STEP` and the reservation is
  written (fsync) *before* a counter beyond the last one is used, as stacks do.
- Incoming NWK counters per (key sequence, source IEEE) and APS counters per link key
  refuse replays; a counter is recorded only after the MIC verified, so garbage cannot
  push a neighbour's counter forward.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from radios.crypto import key_load_key, key_transport_key
from radios.nwk import KeyId
from radios.state import LinkKeyEntry, NodeState

COUNTER_STEP = 1024
COUNTER_MAX = 0xFFFFFFFF


class OutgoingCounter:
    """A frame counter reserved ahead in NV (``reserve`` writes the state durably)."""

    def __init__(self, state: NodeState, field: str, persist: Callable[[], None]) -> None:
        self._state = state
        self._field = field
        self._persist = persist
        self.value = getattr(state, field)  # everything below the reservation may be used

    def next(self) -> int:
        value = self.value
        if value >= COUNTER_MAX:
            raise OverflowError("frame counter exhausted: the network key must change")
        if value >= getattr(self._state, self._field):
            setattr(self._state, self._field, min(value + COUNTER_STEP, COUNTER_MAX))
            self._persist()  # durable before the counter goes on the air
        self.value = value + 1
        return value


class KeyStore:
    def __init__(self, state: NodeState, *, persist_now: Callable[[], None],
                 mark_dirty: Callable[[], None]) -> None:
        self.state = state
        self.mark_dirty = mark_dirty
        self.nwk_tx = OutgoingCounter(state, "nwk_tx_reserved", persist_now)
        self.aps_tx = OutgoingCounter(state, "aps_tx_reserved", persist_now)
        self.stats: collections.Counter[str] = collections.Counter()

    # -- network keys ----------------------------------------------------------------------
    def network_key(self, seq: int | None = None) -> bytes | None:
        key = self.state.network_keys.get(self.state.active_key_seq if seq is None else seq)
        return None if key is None else bytes.fromhex(key)

    @property
    def active_seq(self) -> int:
        return self.state.active_key_seq

    def set_network_key(self, key: bytes, seq: int, *, activate: bool) -> None:
        self.state.network_keys[seq & 0xFF] = bytes(key).hex()
        if activate:
            self.activate(seq)
        self.mark_dirty()

    def activate(self, seq: int) -> bool:
        """Switch Key: the key with ``seq`` becomes active; older keys are forgotten."""
        if seq not in self.state.network_keys:
            return False
        self.state.active_key_seq = seq
        for other in [s for s in self.state.network_keys if s != seq]:
            del self.state.network_keys[other]
        self.state.nwk_rx = {k: v for k, v in self.state.nwk_rx.items() if k[0] == seq}
        self.mark_dirty()
        return True

    # -- link keys ---------------------------------------------------------------------------
    def link_key(self, partner: int | None) -> LinkKeyEntry | None:
        entry = self.state.link_keys.get(partner) if partner is not None else None
        if entry is None and self.state.join_key is not None and (
                partner is None or partner == self.state.tc_ieee or self.state.tc_ieee is None):
            return LinkKeyEntry(key=self.state.join_key, kind=self.state.join_key_kind,
                                rx=self.join_rx)
        return entry

    join_rx = -1

    def set_link_key(self, partner: int, key: bytes, kind: str) -> None:
        self.state.link_keys[partner] = LinkKeyEntry(key=bytes(key).hex(), kind=kind)
        self.mark_dirty()

    def forget_link_key(self, partner: int) -> None:
        if self.state.link_keys.pop(partner, None) is not None:
            self.mark_dirty()

    def key_for(self, key_id: KeyId, entry: LinkKeyEntry) -> bytes:
        link = bytes.fromhex(entry.key)
        if key_id == KeyId.KEY_TRANSPORT:
            return key_transport_key(link)
        if key_id == KeyId.KEY_LOAD:
            return key_load_key(link)
        return link

    # -- replay protection -----------------------------------------------------------------------
    def nwk_fresh(self, seq: int, source: int, counter: int) -> bool:
        return counter > self.state.nwk_rx.get((seq, source), -1)

    def nwk_accept(self, seq: int, source: int, counter: int) -> None:
        self.state.nwk_rx[(seq, source)] = counter
        self.mark_dirty()

    def aps_fresh(self, partner: int, counter: int) -> bool:
        entry = self.state.link_keys.get(partner)
        last = entry.rx if entry is not None else self.join_rx
        return counter > last

    def aps_accept(self, partner: int, counter: int) -> None:
        entry = self.state.link_keys.get(partner)
        if entry is not None:
            entry.rx = counter
        else:
            self.join_rx = counter
        self.mark_dirty()

    def forget_neighbour(self, source: int) -> None:
        """A device left: its counters start again when it joins anew (a new join gets a
        fresh network-key exchange; the counters it sends keep rising anyway)."""
        for key in [k for k in self.state.nwk_rx if k[1] == source]:
            del self.state.nwk_rx[key]
        self.mark_dirty()
