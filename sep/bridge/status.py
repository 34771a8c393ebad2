"""How a broker looks from this process, reported once per change (not per meter per retry).

Every bridge of the process that talks to the same broker (``hubsim demo --meters 20``: twenty
bridges) shares one :class:`BrokerStatus`. A bridge tells it when it connects, fails or stops;
the status logs a line only when what a person would read changes — "cannot reach the broker:
Connection refused" once, however many meters retry however often, then "connected (20
meters)" once it is back — and :meth:`BrokerStatus.summary` is what a live view shows.
"""

from __future__ import annotations

import logging
import re
import time

LOGGER = logging.getLogger("sep.bridge")

_REGISTRY: dict[str, BrokerStatus] = {}


def broker_status(broker: str) -> BrokerStatus:
    """The one status object of ``host:port`` in this process."""
    status = _REGISTRY.get(broker)
    if status is None:
        status = _REGISTRY[broker] = BrokerStatus(broker)
    return status


def clean_error(exc: BaseException | str) -> str:
    """A broker error as a person reads it: no errno prefix, no library noise."""
    text = str(exc).strip() or type(exc).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    text = re.sub(r"^\[code:\d+\]\s*", "", text)
    return text


class BrokerStatus:
    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.clients: dict[str, str] = {}  # client name → "connected" / "retrying" / "stopped"
        self.error: str | None = None
        self.since = time.time()
        self.reports: list[str] = []  # what was logged (the live view and tests read it)
        self._last: tuple[str, str | None] | None = None

    def connected(self, client: str) -> None:
        self.clients[client] = "connected"
        self._changed()

    def failed(self, client: str, error: BaseException | str) -> None:
        self.clients[client] = "retrying"
        self.error = clean_error(error)
        self._changed()

    def stopped(self, client: str) -> None:
        self.clients[client] = "stopped"
        self._changed()

    @property
    def state(self) -> str:
        states = {s for s in self.clients.values() if s != "stopped"}
        if not states:
            return "stopped"
        if states == {"connected"}:
            return "connected"
        return "partly connected" if "connected" in states else "unreachable"

    def summary(self) -> str:
        live = [s for s in self.clients.values() if s != "stopped"]
        up = sum(s == "connected" for s in live)
        state = self.state
        if state == "connected":
            return f"{self.broker} connected" + (f" ({up} bridges)" if up > 1 else "")
        if state == "stopped":
            return f"{self.broker} disconnected"
        text = f"{self.broker} {state}: {self.error or 'no answer'}; retrying"
        return text + (f" ({up}/{len(live)} connected)" if up else "")

    def _changed(self) -> None:
        key = (self.state, self.error if self.state != "connected" else None)
        if key == self._last or key[0] == "stopped":
            return
        if key[0] == "partly connected" and self._last is not None and \
                self._last[0] == "unreachable":
            return  # bridges coming back one by one: one line when all are
        self._last = key
        self.since = time.time()
        line = f"MQTT broker {self.summary()}"
        if key[0] == "connected":
            LOGGER.warning(line) if self.reports else LOGGER.info(line)
        else:
            LOGGER.warning("%s (reported again only when this changes)", line)
        self.reports.append(line)
