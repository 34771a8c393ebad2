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
- SetSupplyStatus (:meth:`SupplyControl.set_supply_status`) sets where tamper, depletion,
  uncontrolled flow and load limiting leave the supply. It carries no provider id, but
  obeys the same issuer-event-id rule as ChangeSupply: one sequence of ids for every
  supply command, each newer than the last applied, so none can be replayed.
- A scheduled ChangeSupply that asks for acknowledgement remembers who asked
  (``PendingChange.requester``): its SupplyStatusResponse goes to that node alone.

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
    #: (NWK, endpoint) of the node that sent the ChangeSupply (its SupplyStatusResponse
    #: goes there); None when unknown
    requester: tuple[int, int] | None = None


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
        # SetSupplyStatus: where tamper, depletion and uncontrolled flow leave the supply
        self.tamper_state = SupplyStatus.OFF
        self.depletion_state = SupplyStatus.OFF
        self.uncontrolled_flow_state = SupplyStatus.OFF
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
            "states": [int(self.tamper_state), int(self.depletion_state),
                       int(self.uncontrolled_flow_state)],
            "pending": None if p is None else [p.provider_id, p.issuer_event_id,
                                               p.implementation_time, int(p.status),
                                               p.ack_required,
                                               None if p.requester is None else list(p.requester)],
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
        states = state.get("states", [0, 0, 0])
        self.tamper_state, self.depletion_state, self.uncontrolled_flow_state = (
            SupplyStatus(int(v)) for v in states)
        p = state.get("pending")
        requester = p[5] if p is not None and len(p) > 5 and p[5] is not None else None
        self.pending = None if p is None else PendingChange(
            int(p[0]), int(p[1]), int(p[2]), SupplyStatus(int(p[3])), bool(p[4]),
            None if requester is None else (int(requester[0]), int(requester[1])))

    # -- authorisation ---------------------------------------------------------------------
    def authorise(self, provider_id: int | None, issuer_event_id: int) -> None:
        """Our provider id (None: the command carries none) and a newer issuer event id."""
        if provider_id is not None and provider_id != self.provider_id:
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
                      proposed: int, now: float, *, ack_required: bool = False,
                      requester: tuple[int, int] | None = None) -> None:
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
                                     ack_required, requester)
        self.events("SUPPLY_CHANGE_SCHEDULED", {"to": status.name, "at": implementation_time,
                                                "issuer_event_id": issuer_event_id})

    def set_status(self, status: SupplyStatus, source: str, **details: Any) -> None:
        """Move the supply for a reason of the meter's own (a change of tenancy): logged and
        reported like any switch; no issuer event id is used up."""
        self._apply(status, source, **details)

    def local_change(self, proposed: int, source: str = "local") -> None:
        """LocalChangeSupply: 1 = off/armed (from ON), 2 = on (only from ARMED).
        ``source`` names who pressed the button in the event log (local, mqtt)."""
        if proposed == SupplyStatus.ARMED:
            if self.status == SupplyStatus.OFF:
                self._refuse("ACTION_DENIED", "the supplier turned the supply off")
            self._apply(SupplyStatus.ARMED, source)
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
            self._apply(SupplyStatus.ON, source)
            return
        self._refuse("INVALID_VALUE", f"local supply status {proposed} is not allowed")

    def set_supply_status(self, issuer_event_id: int, tamper: int, depletion: int,
                          uncontrolled_flow: int, load_limit: int) -> None:
        """SetSupplyStatus (SE 1.4 D.3.2.3.1.14): the states the supply goes to on tamper,
        depletion, uncontrolled flow and load limiting. A newer issuer event id than the
        last supply command's is required (NOT_AUTHORIZED: a replay); a reserved state
        value is INVALID_VALUE and changes nothing (the id is not used up)."""
        self.authorise(None, issuer_event_id)
        values = [tamper, depletion, uncontrolled_flow, load_limit]
        if any(v not in SupplyStatus._value2member_map_ for v in values):
            self._refuse("INVALID_VALUE", f"supply states {values}: a value is reserved")
        self.last_issuer_event_id = issuer_event_id
        self.tamper_state, self.depletion_state, self.uncontrolled_flow_state, \
            self.load_limit_state = (SupplyStatus(v) for v in values)
        self.events("SUPPLY_STATUS_SET", {
            "issuer_event_id": issuer_event_id, "tamper": tamper, "depletion": depletion,
            "uncontrolled_flow": uncontrolled_flow, "load_limit": load_limit})

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
