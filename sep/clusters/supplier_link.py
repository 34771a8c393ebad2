"""The meter as a client of its supplier's Energy Service Interface (ESI), sans-IO.

In a SMETS2-style HAN the supplier's prices and messages reach the meter through the comms
hub, which carries an ESI: Price and Messaging servers. The meter is a client of those
servers (Price and Messaging are output clusters of its SE endpoint); what the ESI
publishes to it is applied to the meter's own Price and Messaging servers, which then
publish to the meter's HAN clients (IHD, PPMID). The meter asks once when it finds the
ESI (:meth:`SupplierLink.hello`) and is pushed to from then on; confirmations its HAN
clients send for the supplier's messages go back up (:meth:`confirmation`). With a
Calendar server among ``servers`` the meter also asks for the supplier's calendars
(GetCalendar, then each calendar's day and week profiles, seasons and special days, and
GetCalendarCancellation), which the Calendar server assembles and follows.

Only the authorised ESI is listened to: by default the trust centre (NWK 0x0000), or a
node the shell names (``authorised``). Anything else gets NOT_AUTHORIZED. What the ESI
sends is judged by the servers' ``ingest`` (provider id, ranges, lengths) and answered
with a Default Response carrying that status (SUCCESS only when asked for).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

import zigpy.types as t
from zigpy.zcl import foundation

from sep.clusters.general import ZIGBEE_EPOCH, to_zcl_time
from sep.zcl.calendar import Calendar
from sep.zcl.frames import (
    MalformedFrame,
    Request,
    Status,
    build_frame,
    decode_schema,
    default_response,
)
from sep.zcl.messaging import Messaging
from sep.zcl.price import Price

LOGGER = logging.getLogger(__name__)

PRICE_CLUSTER = 0x0700
MESSAGING_CLUSTER = 0x0703
CALENDAR_CLUSTER = 0x0707
NOT_USED = 0xFFFFFFFF
GET_CURRENT_PRICE_RX_ON = 0x01  # GetCurrentPrice command options: requester rx-on-when-idle


def del_old(tsns: set[int]) -> None:
    """Keep a set of remembered TSNs small."""
    while len(tsns) > 8:
        tsns.discard(min(tsns))


class Ingesting(Protocol):
    cluster_id: Any

    def ingest(self, command_id: int, payload: bytes, now: float) -> Status: ...


@dataclasses.dataclass
class LinkStats:
    applied: int = 0
    refused: int = 0
    unauthorised: int = 0


class SupplierLink:
    def __init__(self, servers: list[Ingesting], *,
                 authorised: Callable[[int], bool] = lambda nwk: nwk == 0x0000) -> None:
        self.servers = {int(s.cluster_id): s for s in servers}
        self.authorised = authorised
        self.esi: tuple[int, int] | None = None  # (nwk, endpoint) once found
        self.stats = LinkStats()
        self.log: list[str] = []
        self.upstream_messages: set[int] = set()  # ids of the supplier's messages
        self._tariff_asks: set[int] = set()  # TSNs of our GetTariffInformation requests
        self._calendar_asks: set[int] = set()  # TSNs of our GetCalendar requests
        self._followed: list[int] = []  # current prices whose successors we asked for
        self._tsn = 0x80  # requests of ours (apart from the endpoint's report TSNs)

    @property
    def clusters(self) -> list[int]:
        return sorted(self.servers)

    # -- finding the ESI ---------------------------------------------------------------------
    def on_match(self, nwk: int, endpoints: list[int]) -> bool:
        """A Match_Desc_rsp for the Price server: adopt it if authorised."""
        if not endpoints or not self.authorised(nwk):
            return False
        found = (nwk, endpoints[0])
        if found != self.esi:
            self.esi = found
            self._note(f"supplier ESI at 0x{nwk:04X} endpoint {endpoints[0]}")
        return True

    def _next_tsn(self) -> int:
        self._tsn = 0x80 | ((self._tsn + 1) & 0x7F)
        return self._tsn

    def request(self, cluster_id: int, command_id: int, payload: bytes = b"") -> tuple[int, bytes]:
        hdr = foundation.ZCLHeader.cluster(self._next_tsn(), command_id)
        return cluster_id, build_frame(hdr, payload)

    def hello(self) -> list[tuple[int, bytes]]:
        """The requests that make the ESI tell the meter what it has (and push from then on):
        the current price, the tariffs delivered and received (their matrix, thresholds and
        labels follow), the billing period and the last message. An ESI without one of the
        clusters answers UNSUPPORTED_CLUSTER."""
        out = []
        if PRICE_CLUSTER in self.servers:
            out.append(self.request(PRICE_CLUSTER, 0x00, bytes([GET_CURRENT_PRICE_RX_ON])))
            schema = Price.server_commands[0x06].schema  # GetTariffInformation
            for tariff_type in (0x00, 0x01):  # the delivered tariff, then the received one
                ask = self.request(PRICE_CLUSTER, 0x06, schema(
                    earliest_start_time=0, min_issuer_event_id=0, number_of_commands=1,
                    tariff_type=tariff_type).serialize())
                self._tariff_asks.add(ask[1][1])
                out.append(ask)
            out.append(self.request(PRICE_CLUSTER, 0x0B, Price.server_commands[0x0B].schema(
                earliest_start_time=0, min_issuer_event_id=0xFFFFFFFF, number_of_commands=1,
                tariff_type=0x00).serialize()))  # GetBillingPeriod
        if MESSAGING_CLUSTER in self.servers:
            out.append(self.request(MESSAGING_CLUSTER, 0x00))
        if CALENDAR_CLUSTER in self.servers:
            schema = Calendar.server_commands[0x00].schema  # GetCalendar: in force and next
            ask = self.request(CALENDAR_CLUSTER, 0x00, schema(
                earliest_start_time=0, min_issuer_event_id=NOT_USED, number_of_calendars=0,
                calendar_type=0xFF, provider_id=NOT_USED).serialize())
            self._calendar_asks.add(ask[1][1])
            del_old(self._calendar_asks)
            out += [ask, self.request(CALENDAR_CLUSTER, 0x05)]  # and GetCalendarCancellation
        return out

    def _calendar_details(self, payload: bytes) -> list[bytes]:
        """After a calendar we asked for: its day and week profiles, seasons, special days."""
        ids = payload[0:4] + payload[8:12]  # provider id, issuer calendar id
        out = [self.request(CALENDAR_CLUSTER, 0x01, ids + bytes([1, 0]))[1],
               self.request(CALENDAR_CLUSTER, 0x02, ids + bytes([1, 0]))[1],
               self.request(CALENDAR_CLUSTER, 0x03, ids)[1]]
        special = t.uint32_t(0).serialize() + bytes([0, 0xFF]) + ids
        return [*out, self.request(CALENDAR_CLUSTER, 0x04, special)[1]]

    def _after_current_price(self, publish_price: bytes, now: float) -> list[bytes]:
        """When a price in force now arrives for the first time: ask the ESI what follows
        it (SE carries no TOU schedule). Asked from its end, so the answer holds only
        later prices and asks nothing again."""
        try:
            args = decode_schema(Price.client_commands[0x00].schema, publish_price, strict=False)
        except MalformedFrame:
            return []
        start = int(args.start_time)
        start = int(now) if start == 0 else start + ZIGBEE_EPOCH
        duration = int(args.duration_in_minutes)
        event_id = int(args.issuer_event_id)
        if start > now or duration == 0xFFFF or event_id in self._followed:
            return []
        self._followed.append(event_id)
        del self._followed[:-16]
        schema = Price.server_commands[0x01].schema  # GetScheduledPrices
        return [self.request(PRICE_CLUSTER, 0x01, schema(
            start_time=to_zcl_time(start + 60 * duration), number_of_events=2).serialize())[1]]

    def _tariff_details(self, payload: bytes) -> list[bytes]:
        """After the tariff we asked for: its price matrix, block thresholds, tier labels."""
        tariff_id = t.uint32_t(int.from_bytes(payload[8:12], "little")).serialize()
        return [self.request(PRICE_CLUSTER, command_id, tariff_id)[1]
                for command_id in (0x07, 0x08, 0x0A)]

    def _cpp_answers(self, server: Any) -> list[bytes]:
        """CPPEventResponse for each pending CPP event of the ESI the meter decided on (the
        meter as a client of the supplier's Price server answers it, SE 1.4 D.4.2.3.14)."""
        answers = getattr(server, "cpp_answers", [])
        out = []
        schema = Price.server_commands[0x0D].schema
        while answers:
            event_id, auth = answers.pop(0)
            out.append(self.request(PRICE_CLUSTER, 0x0D, schema(
                issuer_event_id=event_id, cpp_auth=auth).serialize())[1])
            self._note(f"CPP event {event_id}: answered {'accepted' if auth == 1 else 'rejected'}")
        return out

    def confirmation(self, message_id: int, when: float, *, answer: str | None = None,
                     response: str = "") -> tuple[int, bytes] | None:
        """MessageConfirmation for the supplier when a HAN client confirmed one of its
        messages (None for the meter's own messages)."""
        if message_id not in self.upstream_messages:
            return None
        fields: dict[str, Any] = {"message_id": message_id, "confirmation_time": to_zcl_time(when)}
        if answer is not None or response:
            fields["message_confirmation_control"] = {"no": 0x01, "yes": 0x02}.get(answer or "", 0)
            fields["message_response"] = t.LVBytes(response.encode("utf-8"))
        schema = Messaging.server_commands[0x01].schema
        return self.request(MESSAGING_CLUSTER, 0x01, schema(**fields).serialize())

    # -- what the ESI sends ------------------------------------------------------------------
    def handle(self, req: Request, now: float) -> list[bytes]:
        """A server-to-client frame on Price or Messaging."""
        if req.is_general:
            return []  # Default Responses and reports from the ESI need no answer
        if not self.authorised(req.src_nwk):
            self.stats.unauthorised += 1
            self._note(f"refused cluster 0x{req.cluster_id:04X} command 0x{req.command_id:02X} "
                       f"from 0x{req.src_nwk:04X}: not the supplier's ESI")
            return [] if req.broadcast else [default_response(req, Status.NOT_AUTHORIZED)]
        server = self.servers.get(req.cluster_id)
        if server is None:
            return [] if req.broadcast else [default_response(req, Status.UNSUP_CLUSTER_COMMAND)]
        if req.manufacturer is not None:
            status = Status.UNSUP_MANUF_CLUSTER_COMMAND
        else:
            try:
                status = Status(server.ingest(req.command_id, req.payload, now))
            except MalformedFrame as exc:
                LOGGER.info("malformed command 0x%02X from the ESI: %s", req.command_id, exc)
                status = Status.MALFORMED_COMMAND
        follow: list[bytes] = []
        if status == Status.SUCCESS:
            self.stats.applied += 1
            if req.cluster_id == MESSAGING_CLUSTER and req.command_id in (0x00, 0x02):
                self.upstream_messages.add(int.from_bytes(req.payload[:4], "little"))
            if req.cluster_id == PRICE_CLUSTER and req.command_id == 0x04 \
                    and req.tsn in self._tariff_asks:
                self._tariff_asks.discard(req.tsn)
                follow = self._tariff_details(req.payload)
            if req.cluster_id == PRICE_CLUSTER and req.command_id == 0x00:
                follow = self._after_current_price(req.payload, now)
            if req.cluster_id == PRICE_CLUSTER and req.command_id == 0x0B:
                follow = self._cpp_answers(server)
            if req.cluster_id == CALENDAR_CLUSTER and req.command_id == 0x00 \
                    and req.tsn in self._calendar_asks:
                follow = self._calendar_details(req.payload)
        else:
            self.stats.refused += 1
            self._note(f"refused cluster 0x{req.cluster_id:04X} command 0x{req.command_id:02X} "
                       f"from the ESI: {status.name}")
        if req.broadcast or (status == Status.SUCCESS and req.ddr):
            return follow
        return [default_response(req, status), *follow]

    def _note(self, text: str) -> None:
        LOGGER.info("supplier link: %s", text)
        self.log.append(text)
        del self.log[:-50]
