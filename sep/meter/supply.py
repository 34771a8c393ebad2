"""Supply control — the meter's relay (SE 1.4 D.3.2.3.1.10-14, D.3.2.2.7), sans-IO.

States (Metering SupplyStatus 0x0014): OFF (0), ARMED (1: off, a local action may
restore), ON (2).

- ChangeSupply (remote, from the energy service interface): may switch to any state,
  now or at an implementation time. It must come from an authorised node (the trust
  centre / comms hub, see :class:`MeteringServer`), carry our provider id and an issuer
  event id newer than the last one applied — else it is refused (NOT_AUTHORIZED) and
  the refusal is logged. An implementation time of 0xFFFFFFFF cancels the pending change
  with the same provider id and issuer event id (NOT_FOUND if there is none).
- LocalChangeSupply (the consumer's button, or an IHD): OFF/ARMED (1) arms a supply that
  is ON; ON (2) restores a supply that is ARMED. A supply the supplier turned OFF can
  never be restored locally (ACTION_DENIED): that is what ARMED is for — a remote
  "armed" leaves the relay open until the consumer is present and restores it.
- Load limiting: while the demand stays above DemandLimit for the arm duration the relay
  opens to the LoadLimitSupplyState (ARMED by default, set by SetSupplyStatus) and the
  load limit counter counts it; ResetLoadLimitCounter (authorised like ChangeSupply)
  clears the counter.

The relay itself is behind :class:`RelayDriver` (simulated by default; a GPIO/serial
driver plugs in) and every switch and refusal goes to an event sink (the store's event
log, via ``sep/persistence.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable
from typing import Any, Protocol

LOGGER = logging.getLogger(__name__)

CANCEL = 0xFFFFFFFF


class SupplyStatus(enum.IntEnum):
    OFF = 0
    ARMED = 1
    ON = 2


class Refused(Exception):
    """A supply command that is not carried out; ``status`` is the ZCL status to answer."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status  # a foundation.Status name
        self.reason = reason


class RelayDriver(Protocol):
    def set_closed(self, closed: bool) -> None: ...

    @property
    def closed(self) -> bool: ...


class SimulatedRelay:
    def __init__(self, closed: bool = True) -> None:
        self._closed = closed
        self.switches = 0

    def set_closed(self, closed: bool) -> None:
        if closed != self._closed:
            self.switches += 1
        self._closed = closed

    @property
    def closed(self) -> bool:
        return self._closed


EventSink = Callable[[str, dict], None]


@dataclasses.dataclass
class PendingChange:
    provider_id: int
    issuer_event_id: int
    implementation_time: int  # unix seconds
    status: SupplyStatus
    ack_required: bool = False


class SupplyControl:
    def __init__(self, *, provider_id: int = 0x0000ABCD, relay: RelayDriver | None = None,
                 events: EventSink | None = None) -> None:
        self.provider_id = provider_id
        self.relay = relay or SimulatedRelay()
        self.events = events or (lambda kind, details: None)
        self.status = SupplyStatus.ON if self.relay.closed else SupplyStatus.OFF
        self.last_issuer_event_id: int | None = None
        self.pending: PendingChange | None = None
        self.demand_limit_w: int | None = None  # None: no load limiting
        self.arm_duration_s = 60
        self.load_limit_counter = 0
        self.load_limit_state = SupplyStatus.ARMED  # where load limiting leaves the supply
        #: a scheduled change that was carried out and asked for a SupplyStatusResponse
        self.implemented: list[PendingChange] = []
        #: told of every switch (the Metering server reports each one)
        self.on_switch: Callable[[SupplyStatus], None] | None = None
        #: called just before the relay moves, so metrology books the energy drawn up to
        #: that moment under the old state (the app settles its metrology there)
        self.before_switch: Callable[[], None] | None = None
        #: why a local restore is refused now (the prepayment interlock: no credit), or None
        self.interlock: Callable[[], str | None] = lambda: None
        self._over_since: float | None = None

    # -- persistence ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        p = self.pending
        return {
            "status": int(self.status), "last_issuer_event_id": self.last_issuer_event_id,
            "load_limit_counter": self.load_limit_counter,
            "load_limit_state": int(self.load_limit_state),
            "pending": None if p is None else [p.provider_id, p.issuer_event_id,
                                               p.implementation_time, int(p.status),
                                               p.ack_required],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Back to the stored state after a restart: a supply the supplier turned off stays
        off through a power cut, and issuer event ids cannot be replayed."""
        self.status = SupplyStatus(int(state["status"]))
        self.relay.set_closed(self.status == SupplyStatus.ON)
        last = state.get("last_issuer_event_id")
        self.last_issuer_event_id = None if last is None else int(last)
        self.load_limit_counter = int(state.get("load_limit_counter", 0))
        self.load_limit_state = SupplyStatus(int(state.get("load_limit_state", 1)))
        p = state.get("pending")
        self.pending = None if p is None else PendingChange(int(p[0]), int(p[1]), int(p[2]),
                                                            SupplyStatus(int(p[3])), bool(p[4]))

    # -- authorisation ---------------------------------------------------------------------
    def authorise(self, provider_id: int, issuer_event_id: int) -> None:
        if provider_id != self.provider_id:
            self._refuse("NOT_AUTHORIZED", f"provider 0x{provider_id:08X} is not ours")
        if self.last_issuer_event_id is not None and issuer_event_id <= self.last_issuer_event_id:
            self._refuse("NOT_AUTHORIZED", f"issuer event id {issuer_event_id} is not newer "
                                           f"than {self.last_issuer_event_id}")

    def _refuse(self, status: str, reason: str, **details: Any) -> None:
        LOGGER.info("supply command refused: %s", reason)
        self.events("SUPPLY_REFUSED", {"status": status, "reason": reason, **details})
        raise Refused(status, reason)

    # -- transitions ---------------------------------------------------------------------
    def _apply(self, status: SupplyStatus, source: str, **details: Any) -> None:
        old = self.status
        if self.before_switch is not None and (status == SupplyStatus.ON) != self.relay.closed:
            self.before_switch()
        self.status = status
        self.relay.set_closed(status == SupplyStatus.ON)
        if old != status:
            LOGGER.info("supply %s -> %s (%s)", old.name, status.name, source)
            self.events("SUPPLY_CHANGE", {"from": old.name, "to": status.name, "source": source,
                                          "relay_closed": self.relay.closed, **details})
            if self.on_switch is not None:
                self.on_switch(status)

    def remote_change(self, provider_id: int, issuer_event_id: int, implementation_time: int,
                      proposed: int, now: float, *, ack_required: bool = False) -> None:
        """ChangeSupply. ``implementation_time`` in unix seconds, 0 = now, CANCEL = cancel.
        Returns when accepted (applied now, or scheduled: then :attr:`pending` is set, or
        cancelled); raises :class:`Refused` otherwise."""
        if provider_id != self.provider_id:
            self._refuse("NOT_AUTHORIZED", f"provider 0x{provider_id:08X} is not ours")
        if implementation_time == CANCEL:
            p = self.pending
            if p is None or (p.provider_id, p.issuer_event_id) != (provider_id, issuer_event_id):
                self._refuse("NOT_FOUND", f"no pending change with issuer event id {issuer_event_id}")
            self.pending = None
            self.events("SUPPLY_CHANGE_CANCELLED", {"issuer_event_id": issuer_event_id})
            return
        self.authorise(provider_id, issuer_event_id)
        try:
            status = SupplyStatus(proposed)
        except ValueError:
            self._refuse("INVALID_VALUE", f"proposed supply status {proposed} is reserved")
        self.last_issuer_event_id = issuer_event_id
        if implementation_time == 0 or implementation_time <= now:
            self.pending = None
            self._apply(status, "remote", issuer_event_id=issuer_event_id)
            return
        self.pending = PendingChange(provider_id, issuer_event_id, implementation_time, status,
                                     ack_required)
        self.events("SUPPLY_CHANGE_SCHEDULED", {"to": status.name, "at": implementation_time,
                                                "issuer_event_id": issuer_event_id})

    def local_change(self, proposed: int) -> None:
        """LocalChangeSupply: 1 = off/armed (from ON), 2 = on (only from ARMED)."""
        if proposed == SupplyStatus.ARMED:
            if self.status == SupplyStatus.OFF:
                self._refuse("ACTION_DENIED", "the supplier turned the supply off")
            self._apply(SupplyStatus.ARMED, "local")
            return
        if proposed == SupplyStatus.ON:
            if self.status == SupplyStatus.ON:
                return
            if self.status != SupplyStatus.ARMED:
                self._refuse("ACTION_DENIED",
                             f"local restore needs the supply armed, it is {self.status.name}")
            why = self.interlock()
            if why is not None:
                self._refuse("ACTION_DENIED", why)
            self._apply(SupplyStatus.ON, "local")
            return
        self._refuse("INVALID_VALUE", f"local supply status {proposed} is not allowed")

    def interlock_open(self, source: str, **details: Any) -> bool:
        """Open the relay for a local interlock (prepayment: credit exhausted): a supply that
        is ON becomes ARMED, restored by a local action once :attr:`interlock` allows it; a
        supply already open is left as it is (a supplier's OFF stays OFF)."""
        if self.status != SupplyStatus.ON:
            return False
        self._apply(SupplyStatus.ARMED, source, **details)
        return True

    def reset_load_limit_counter(self, provider_id: int, issuer_event_id: int) -> None:
        self.authorise(provider_id, issuer_event_id)
        self.last_issuer_event_id = issuer_event_id
        old, self.load_limit_counter = self.load_limit_counter, 0
        self.events("LOAD_LIMIT_COUNTER_RESET", {"was": old, "issuer_event_id": issuer_event_id})

    def tick(self, now: float, demand_w: int) -> None:
        if self.pending is not None and now >= self.pending.implementation_time:
            change, self.pending = self.pending, None
            self._apply(change.status, "remote (scheduled)", issuer_event_id=change.issuer_event_id)
            if change.ack_required:
                self.implemented.append(change)
        if self.demand_limit_w is None or self.status != SupplyStatus.ON:
            self._over_since = None
            return
        if demand_w > self.demand_limit_w:
            if self._over_since is None:
                self._over_since = now
            elif now - self._over_since >= self.arm_duration_s:
                self.load_limit_counter += 1
                self._over_since = None
                self._apply(self.load_limit_state, "load limit", demand_w=demand_w,
                            limit_w=self.demand_limit_w, counter=self.load_limit_counter)
        else:
            self._over_since = None
