"""Supply control — the meter's relay (SE 1.4 D.3.2.3.1.10-14), sans-IO.

States (Metering SupplyStatus 0x0014): OFF (0), ARMED (1, off but a local action may
restore), ON (2). Remote ChangeSupply may switch to any state; a local restore
(LocalChangeSupply ON, the consumer's button) only works from ARMED. A remote request
must come from the configured provider with an issuer event id newer than the last one
applied; otherwise it is refused (NOT_AUTHORIZED) and logged. Load limiting: when the
demand exceeds DemandLimit for the arm duration the relay opens to ARMED and the load
limit counter counts it; ResetLoadLimitCounter clears the counter.

The relay itself is behind :class:`RelayDriver` (simulated by default; a GPIO/serial
driver plugs in) and every switch is reported to an event sink.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable
from typing import Protocol

LOGGER = logging.getLogger(__name__)


class SupplyStatus(enum.IntEnum):
    OFF = 0
    ARMED = 1
    ON = 2


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
        self._over_since: float | None = None

    # -- authorisation ---------------------------------------------------------------------
    def authorise(self, provider_id: int, issuer_event_id: int) -> str | None:
        """None when a remote request may be applied, else why not."""
        if provider_id != self.provider_id:
            return f"provider 0x{provider_id:08X} is not ours"
        if self.last_issuer_event_id is not None and issuer_event_id <= self.last_issuer_event_id:
            return f"issuer event id {issuer_event_id} is not newer than {self.last_issuer_event_id}"
        return None

    # -- transitions ---------------------------------------------------------------------
    def _apply(self, status: SupplyStatus, source: str) -> None:
        old = self.status
        self.status = status
        self.relay.set_closed(status == SupplyStatus.ON)
        if old != status:
            LOGGER.info("supply %s -> %s (%s)", old.name, status.name, source)
            self.events("SUPPLY_CHANGE", {"from": old.name, "to": status.name, "source": source})

    def remote_change(self, provider_id: int, issuer_event_id: int, implementation_time: int,
                      proposed: int, now: float) -> str | None:
        """ChangeSupply. Returns None when accepted (applied or scheduled), else the reason."""
        why = self.authorise(provider_id, issuer_event_id)
        if why is not None:
            self.events("SUPPLY_REFUSED", {"reason": why})
            return why
        if implementation_time == 0xFFFFFFFF:  # cancel a pending change
            self.last_issuer_event_id = issuer_event_id
            self.pending = None
            return None
        try:
            status = SupplyStatus(proposed)
        except ValueError:
            return f"proposed supply status {proposed} is reserved"
        self.last_issuer_event_id = issuer_event_id
        if implementation_time == 0 or implementation_time <= now:
            self.pending = None
            self._apply(status, "remote")
        else:
            self.pending = PendingChange(provider_id, issuer_event_id, implementation_time, status)
        return None

    def local_change(self, proposed: int) -> str | None:
        """LocalChangeSupply: 1 = off/armed, 2 = on (only from ARMED: the local restore)."""
        if proposed == SupplyStatus.ARMED:
            self._apply(SupplyStatus.ARMED, "local")
            return None
        if proposed == SupplyStatus.ON:
            if self.status != SupplyStatus.ARMED:
                return f"local restore needs the supply armed, it is {self.status.name}"
            self._apply(SupplyStatus.ON, "local")
            return None
        return f"local supply status {proposed} is not allowed"

    def reset_load_limit_counter(self, provider_id: int, issuer_event_id: int) -> str | None:
        why = self.authorise(provider_id, issuer_event_id)
        if why is not None:
            return why
        self.last_issuer_event_id = issuer_event_id
        self.load_limit_counter = 0
        self.events("LOAD_LIMIT_COUNTER_RESET", {})
        return None

    def tick(self, now: float, demand_w: int) -> None:
        if self.pending is not None and now >= self.pending.implementation_time:
            change, self.pending = self.pending, None
            self._apply(change.status, "remote (scheduled)")
        if self.demand_limit_w is None or self.status != SupplyStatus.ON:
            self._over_since = None
            return
        if demand_w > self.demand_limit_w:
            if self._over_since is None:
                self._over_since = now
            elif now - self._over_since >= self.arm_duration_s:
                self.load_limit_counter += 1
                self._over_since = None
                self._apply(SupplyStatus.ARMED, "load limit")
        else:
            self._over_since = None
