"""Key Establishment (CBKE, SE 1.4 Annex C), sans-IO: the responder and the initiator.

One :class:`KeyEstablishment` object per node plays both roles: the cluster server (the
responder, V) answers what partners initiate, and the client (the initiator, U) runs the
exchanges the shell starts with :meth:`KeyEstablishment.initiate`. Decoded frames and time go
in (:meth:`~KeyEstablishment.handle`, :meth:`~KeyEstablishment.tick`); out come effects:
:class:`~sep.zcl.frames.Reply` frames to send, :class:`KeyEstablished` (install the link key
for that partner) and :class:`KeyEstablishmentFailed`. Nothing here touches a socket, a loop
or a clock.

The exchange (U → V unless said)::

    Read Attributes KeyEstablishmentSuite        (U learns V's suites; none answered = suite 1)
    InitiateKeyEstablishmentRequest(suite, times, cert U)  → Response(suite, times, cert V)
    EphemeralDataRequest(QEU)                              → EphemeralDataResponse(QEV)
    ConfirmKeyDataRequest(MACU)                            → ConfirmKeyDataResponse(MACV)

Either side ends a failed exchange with TerminateKeyEstablishment(status, wait time, suite):
UNSUPPORTED_SUITE (a suite we have no credentials for), BAD_MESSAGE (truncated or undecodable
payload, a certificate whose subject is not the sender, a bad ephemeral point, a command out
of sequence), UNKNOWN_ISSUER (a certificate from another CA), INVALID_CERTIFICATE (suite-2
type/curve/hash/key usage/validity wrong, or an unusable reconstruction point),
BAD_KEY_CONFIRM (MACU or MACV wrong), NO_RESOURCES (a second exchange with the same partner,
or more partners than ``max_sessions``; the wait time says when to come back).

Identity: the sender's IEEE comes from the radio (``Request.src_ieee``); a certificate whose
subject is not that address is refused. The initiator checks the responder's subject
against the IEEE the shell named in :meth:`~KeyEstablishment.initiate`.

Timing: the generate-time fields are honoured. Each side waits for the partner's next
message for ``margin`` seconds plus the time the partner advertised for the work that comes
before it; then the responder drops the exchange and the initiator retries (``retries``
times, ``retry_delay`` apart, and after the wait time a NO_RESOURCES Terminate names).

Threads: :meth:`~KeyEstablishment.handle`, :meth:`~KeyEstablishment.initiate` and
:meth:`~KeyEstablishment.tick` are plain CPU work (the EC maths: a few scalar
multiplications, ~45 ms each on sect283k1) and may run in executor threads, several at a
time: each partner's exchange is guarded by its own lock. ``compute`` runs the heavy
functions of :mod:`sep.security.cbke` (default: in the calling thread); see
:mod:`sep.ke.executor` for the asyncio side.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import zigpy.types as t
from zigpy.zcl import foundation

from sep.clusters.base import ClusterServer
from sep.security import cbke
from sep.security.certs import (
    CERTIFICATE_LENGTH,
    CertificateError,
    Credentials,
    field_problem,
    parse_certificate,
    subject_of,
)
from sep.zcl import key_establishment as ke
from sep.zcl.frames import (
    SE_PROFILE,
    Direction,
    MalformedFrame,
    Reply,
    Request,
    Status,
    build_frame,
    decode_schema,
    default_response,
    response_header,
)
from sep.zcl.key_establishment import KeStatus

LOGGER = logging.getLogger(__name__)
GC = foundation.GeneralCommand

#: runs one function of :mod:`sep.security.cbke` (``compute(fn, *args, **kwargs)``)
Compute = Callable[..., Any]


def _direct(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


# ----------------------------------------------------------------------------------- effects


@dataclasses.dataclass(frozen=True)
class KeyEstablished:
    """Both sides proved the key: install ``link_key`` as the APS link key with the partner."""

    partner_ieee: int
    partner_nwk: int
    link_key: bytes
    suite: int
    initiator: bool  # True when we initiated
    partner_certificate: bytes


@dataclasses.dataclass(frozen=True)
class KeyEstablishmentFailed:
    """An exchange ended without a key. ``status`` is the Terminate status sent or received
    (None for a timeout or a local reason); ``by_partner`` when the partner terminated."""

    partner_ieee: int | None
    partner_nwk: int
    status: KeStatus | None
    reason: str
    initiator: bool
    by_partner: bool = False


Effect = Reply | KeyEstablished | KeyEstablishmentFailed


class State(enum.Enum):
    # initiator
    READ_SUITES = "reading the partner's suites"
    WAIT_INITIATE_RESPONSE = "waiting for InitiateKeyEstablishmentResponse"
    WAIT_EPHEMERAL_RESPONSE = "waiting for EphemeralDataResponse"
    WAIT_CONFIRM_RESPONSE = "waiting for ConfirmKeyDataResponse"
    BACKOFF = "waiting to try again"
    # responder
    WAIT_EPHEMERAL_REQUEST = "waiting for EphemeralDataRequest"
    WAIT_CONFIRM_REQUEST = "waiting for ConfirmKeyDataRequest"


@dataclasses.dataclass(eq=False)
class _Session:
    ieee: int
    nwk: int
    endpoint: int
    initiator: bool
    state: State
    deadline: float
    suite: int | None = None
    tsn: int = 0
    attempts: int = 0
    partner_eph_time: int = 0
    partner_confirm_time: int = 0
    partner_certificate: bytes = b""
    partner_static: bytes = b""
    own_ephemeral: int = 0
    own_ephemeral_public: bytes = b""
    partner_ephemeral_public: bytes = b""
    keys: cbke.ExchangeKeys | None = None
    closed: bool = False
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class _Refused(Exception):
    """Ends an exchange: Terminate with ``status`` (when ``send``) and a failure effect."""

    def __init__(self, status: KeStatus | None, reason: str, *, send: bool = True) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.send = send


class _SuiteAttribute(ClusterServer):
    """The KeyEstablishmentSuite attribute (server side, and the client side's copy)."""

    cluster = ke.KeyEstablishment

    def __init__(self, value: int) -> None:
        super().__init__()
        self.values[ke.ATTR_KEY_ESTABLISHMENT_SUITE] = value


# ------------------------------------------------------------------------------------- core


class KeyEstablishment:
    def __init__(
        self,
        credentials: Sequence[Credentials],
        *,
        endpoint: int,
        own_ieee: int | None = None,
        ephemeral_data_generate_time: int = 10,
        confirm_key_generate_time: int = 10,
        margin: float = 10.0,
        retries: int = 3,
        retry_delay: float = 5.0,
        max_sessions: int = 4,
        terminate_wait_time: int = 10,
        check_validity: bool = True,
        ephemeral_source: cbke.EphemeralSource = cbke.random_ephemeral,
        compute: Compute = _direct,
    ) -> None:
        """``credentials``: one per suite we offer (suite 2 is chosen when both sides have
        it). ``own_ieee`` (64-bit int), when given, must be every certificate's subject.
        ``margin``: seconds added to a partner's advertised generate time before giving up
        on its answer. ``check_validity``: refuse suite-2 certificates outside their
        validity period at ``now`` (``now`` is then Unix time)."""
        self.credentials: dict[int, Credentials] = {}
        for cred in credentials:
            if cred.suite in self.credentials:
                raise ValueError(f"two sets of credentials for suite {cred.suite}")
            if own_ieee is not None and cred.subject != own_ieee:
                raise ValueError(f"the suite {cred.suite} certificate is for "
                                 f"{cred.subject:016x}, not this node ({own_ieee:016x})")
            self.credentials[cred.suite] = cred
        if not self.credentials:
            raise ValueError("Key Establishment needs credentials for at least one suite")
        for name, value in (("ephemeral_data_generate_time", ephemeral_data_generate_time),
                            ("confirm_key_generate_time", confirm_key_generate_time),
                            ("terminate_wait_time", terminate_wait_time)):
            if not 0 <= value <= 255:
                raise ValueError(f"{name} is a u8 of seconds")
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.endpoint = endpoint
        self.eph_time = ephemeral_data_generate_time
        self.confirm_time = confirm_key_generate_time
        self.margin = margin
        self.retries = retries
        self.retry_delay = retry_delay
        self.max_sessions = max_sessions
        self.terminate_wait_time = terminate_wait_time
        self.check_validity = check_validity
        self.ephemeral_source = ephemeral_source
        self.compute = compute
        self.attributes = _SuiteAttribute(self.suite_value)
        self._sessions: dict[int, _Session] = {}
        self._table = threading.Lock()
        self._tsn = 0
        self._tsn_lock = threading.Lock()

    # -- what we offer ----------------------------------------------------------------------
    @property
    def suites(self) -> list[int]:
        return sorted(self.credentials)

    @property
    def suite_value(self) -> int:
        return ke.suite_value(self.credentials)

    def busy(self, partner_ieee: int) -> bool:
        with self._table:
            return partner_ieee in self._sessions

    @property
    def exchanges(self) -> int:
        with self._table:
            return len(self._sessions)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing pending)."""
        with self._table:
            return min((s.deadline for s in self._sessions.values()), default=None)

    # -- frames in ------------------------------------------------------------------------------
    def handle(self, req: Request, now: float) -> list[Effect]:
        """A decoded frame of cluster 0x0800 addressed to us (either direction)."""
        if req.cluster_id != ke.CLUSTER_ID:
            return []
        to_server = req.header.frame_control.direction == Direction.Client_to_Server
        if req.is_general:
            return self._general(req, now, to_server)
        if req.manufacturer is not None:
            return self._default(req, Status.UNSUP_MANUF_CLUSTER_COMMAND)
        if req.broadcast:
            return []  # key establishment is unicast only
        if req.command_id not in ke.COMMAND_NAMES:
            return self._default(req, Status.UNSUP_CLUSTER_COMMAND)
        if to_server and req.command_id == ke.INITIATE:
            return self._initiate_request(req, now)
        session = self._find(req)
        # (a Terminate counts whatever its direction bit: some stacks get it wrong)
        if session is None or (session.initiator == to_server and req.command_id != ke.TERMINATE):
            return self._stray(req)
        with session.lock:
            if session.closed:
                return self._stray(req)
            try:
                if req.command_id == ke.TERMINATE:
                    return self._terminated(session, req, now)
                if to_server:
                    return self._as_responder(session, req, now)
                return self._as_initiator(session, req, now)
            except _Refused as exc:
                return self._refuse(session, exc, req)
            except Exception:  # noqa: BLE001 - a bug must end the exchange, not the meter
                return self._internal_error(session, req)

    # -- the responder ------------------------------------------------------------------------
    def _initiate_request(self, req: Request, now: float) -> list[Effect]:
        try:
            args = decode_schema(ke.schema(ke.INITIATE, to_server=True), req.payload,
                                 strict=False)
        except MalformedFrame as exc:
            return [self._terminate_reply(req, KeStatus.BAD_MESSAGE, self.terminate_wait_time,
                                          self.suite_value, f"undecodable Initiate: {exc}")]
        suite_bits = int(args.key_establishment_suite)
        ieee = req.src_ieee
        if ieee is None:
            return [self._terminate_reply(req, KeStatus.BAD_MESSAGE, self.terminate_wait_time,
                                          suite_bits, "the sender's IEEE address is unknown")]
        with self._table:
            current = self._sessions.get(ieee)
            if current is not None or len(self._sessions) >= self.max_sessions:
                pending = [current] if current is not None else list(self._sessions.values())
                wait = min(255, max(1, math.ceil(min(s.deadline for s in pending) - now)))
                reason = ("an exchange with this partner is in progress" if current is not None
                          else "too many exchanges in progress")
                return [self._terminate_reply(req, KeStatus.NO_RESOURCES, wait, suite_bits,
                                              reason)]
            session = _Session(ieee=ieee, nwk=req.src_nwk, endpoint=req.src_ep,
                               initiator=False, state=State.WAIT_EPHEMERAL_REQUEST,
                               deadline=now + self.margin)
            session.lock.acquire()
            self._sessions[ieee] = session
        try:
            suite = self._suite_of_bits(suite_bits)
            if suite is None:
                raise _Refused(KeStatus.UNSUPPORTED_SUITE,
                               f"suite value 0x{suite_bits:04X} is not one we have")
            session.suite = suite
            self._take_certificate(session, bytes(args.identity), ieee, now)
            session.partner_eph_time = int(args.ephemeral_data_generate_time)
            session.partner_confirm_time = int(args.confirm_key_generate_time)
            session.deadline = now + self.margin + session.partner_eph_time
            LOGGER.info("key establishment: %016x initiates suite %d", ieee, suite)
            return [self._reply(req, ke.INITIATE, self._initiate_payload(suite))]
        except _Refused as exc:
            return self._refuse(session, exc, req)
        except Exception:  # noqa: BLE001
            return self._internal_error(session, req)
        finally:
            session.lock.release()

    def _as_responder(self, session: _Session, req: Request, now: float) -> list[Effect]:
        assert session.suite is not None
        if req.command_id == ke.EPHEMERAL_DATA:
            if session.state != State.WAIT_EPHEMERAL_REQUEST:
                raise _Refused(KeStatus.BAD_MESSAGE, f"EphemeralDataRequest while {session.state.value}")
            session.partner_ephemeral_public = self._ephemeral(session.suite, req.payload)
            self._new_ephemeral(session)
            session.state = State.WAIT_CONFIRM_REQUEST
            session.deadline = now + self.margin + session.partner_confirm_time
            return [self._reply(req, ke.EPHEMERAL_DATA, session.own_ephemeral_public)]
        if req.command_id == ke.CONFIRM_KEY_DATA:
            if session.state != State.WAIT_CONFIRM_REQUEST:
                raise _Refused(KeStatus.BAD_MESSAGE, f"ConfirmKeyDataRequest while {session.state.value}")
            mac_u = self._mac(req)
            keys = session.keys = self._derive(session)
            if not cbke.same_mac(mac_u, keys.mac_u):
                raise _Refused(KeStatus.BAD_KEY_CONFIRM, "MACU does not match")
            return [self._reply(req, ke.CONFIRM_KEY_DATA, keys.mac_v),
                    self._established(session)]
        raise _Refused(KeStatus.BAD_MESSAGE, f"unexpected command 0x{req.command_id:02X}")

    # -- the initiator ------------------------------------------------------------------------
    def initiate(self, partner_nwk: int, partner_endpoint: int, partner_ieee: int, now: float,
                 *, suite: int | None = None) -> list[Effect]:
        """Start an exchange with a partner (its NWK address, the endpoint of its Key
        Establishment server, its IEEE as a 64-bit int). ``suite`` skips reading the
        partner's suites. Nothing happens while an exchange with that partner is running."""
        if suite is not None and suite not in self.credentials:
            raise ValueError(f"no credentials for suite {suite}")
        with self._table:
            if partner_ieee in self._sessions:
                return []
            if len(self._sessions) >= self.max_sessions:
                return [KeyEstablishmentFailed(partner_ieee, partner_nwk, KeStatus.NO_RESOURCES,
                                               "too many exchanges in progress here",
                                               initiator=True)]
            session = _Session(ieee=partner_ieee, nwk=partner_nwk, endpoint=partner_endpoint,
                               initiator=True, state=State.BACKOFF, deadline=now, suite=suite)
            session.lock.acquire()
            self._sessions[partner_ieee] = session
        try:
            LOGGER.info("key establishment: initiating with %016x", partner_ieee)
            return self._start(session, now)
        finally:
            session.lock.release()

    def _start(self, session: _Session, now: float) -> list[Effect]:
        """(Re)start an exchange as the initiator: nothing of an earlier attempt is kept."""
        session.deadline = now + self.margin
        session.own_ephemeral, session.keys = 0, None
        if session.suite is None:
            session.state = State.READ_SUITES
            payload = t.uint16_t(ke.ATTR_KEY_ESTABLISHMENT_SUITE).serialize()
            return [self._request(session, GC.Read_Attributes, payload, general=True)]
        session.state = State.WAIT_INITIATE_RESPONSE
        return [self._request(session, ke.INITIATE, self._initiate_payload(session.suite))]

    def _suites_read(self, session: _Session, req: Request, now: float) -> list[Effect]:
        theirs = frozenset({1})  # SE 1.0/1.1 devices without the attribute have suite 1
        try:
            records = decode_schema(t.List[foundation.ReadAttributeRecord], req.payload)
        except MalformedFrame:
            records = []
        for rec in records:
            if int(rec.attrid) == ke.ATTR_KEY_ESTABLISHMENT_SUITE and rec.status == Status.SUCCESS:
                theirs = ke.suites_of(int(rec.value.value))
        common = sorted(theirs & set(self.credentials))
        if not common:
            raise _Refused(KeStatus.UNSUPPORTED_SUITE,
                           f"no common suite (partner has {sorted(theirs)})", send=False)
        session.suite = common[-1]
        return self._start(session, now)

    def _as_initiator(self, session: _Session, req: Request, now: float) -> list[Effect]:
        expected = {State.WAIT_INITIATE_RESPONSE: ke.INITIATE,
                    State.WAIT_EPHEMERAL_RESPONSE: ke.EPHEMERAL_DATA,
                    State.WAIT_CONFIRM_RESPONSE: ke.CONFIRM_KEY_DATA}.get(session.state)
        name = ke.COMMAND_NAMES[req.command_id]
        if req.command_id != expected:
            raise _Refused(KeStatus.BAD_MESSAGE, f"{name} response while {session.state.value}")
        assert session.suite is not None
        if req.command_id == ke.INITIATE:
            try:
                args = decode_schema(ke.schema(ke.INITIATE, to_server=False), req.payload,
                                     strict=False)
            except MalformedFrame as exc:
                raise _Refused(KeStatus.BAD_MESSAGE, f"undecodable Initiate response: {exc}") from None
            if int(args.key_establishment_suite) != ke.SUITE_BITS[session.suite]:
                raise _Refused(KeStatus.BAD_MESSAGE, f"the response is for suite value "
                               f"0x{int(args.key_establishment_suite):04X}, not suite {session.suite}")
            self._take_certificate(session, bytes(args.identity), session.ieee, now)
            session.partner_eph_time = int(args.ephemeral_data_generate_time)
            session.partner_confirm_time = int(args.confirm_key_generate_time)
            self._new_ephemeral(session)
            session.state = State.WAIT_EPHEMERAL_RESPONSE
            session.deadline = now + self.margin + session.partner_eph_time
            return [self._request(session, ke.EPHEMERAL_DATA, session.own_ephemeral_public)]
        if req.command_id == ke.EPHEMERAL_DATA:
            session.partner_ephemeral_public = self._ephemeral(session.suite, req.payload)
            keys = session.keys = self._derive(session)
            session.state = State.WAIT_CONFIRM_RESPONSE
            session.deadline = now + self.margin + session.partner_confirm_time
            return [self._request(session, ke.CONFIRM_KEY_DATA, keys.mac_u)]
        mac_v = self._mac(req)
        assert session.keys is not None
        if not cbke.same_mac(mac_v, session.keys.mac_v):
            raise _Refused(KeStatus.BAD_KEY_CONFIRM, "MACV does not match")
        return [self._established(session)]

    # -- both ------------------------------------------------------------------------------------
    def _terminated(self, session: _Session, req: Request, now: float) -> list[Effect]:
        try:
            args = decode_schema(ke.schema(ke.TERMINATE, to_server=not session.initiator),
                                 req.payload, strict=False)
            status, wait = KeStatus(int(args.status_code)), int(args.wait_time)
        except (MalformedFrame, ValueError):
            status, wait = KeStatus.BAD_MESSAGE, self.terminate_wait_time
        ack = [] if req.ddr else self._default(req, Status.SUCCESS)
        if (session.initiator and status == KeStatus.NO_RESOURCES
                and session.attempts < self.retries):
            session.attempts += 1
            session.state = State.BACKOFF
            session.deadline = now + max(1, wait)
            LOGGER.info("key establishment: %016x is busy, trying again in %d s",
                        session.ieee, max(1, wait))
            return ack
        self._close(session)
        LOGGER.info("key establishment: %016x terminated: %s", session.ieee, status.name)
        return [*ack, KeyEstablishmentFailed(session.ieee, session.nwk, status,
                                             f"the partner terminated ({status.name})",
                                             initiator=session.initiator, by_partner=True)]

    def _take_certificate(self, session: _Session, identity: bytes, sender: int,
                          now: float) -> None:
        """Check the partner's certificate and reconstruct its static public key."""
        assert session.suite is not None
        ours = self.credentials[session.suite]
        if len(identity) != CERTIFICATE_LENGTH[session.suite]:
            raise _Refused(KeStatus.BAD_MESSAGE, f"a suite {session.suite} certificate is "
                           f"{CERTIFICATE_LENGTH[session.suite]} bytes, not {len(identity)}")
        cert = parse_certificate(identity, session.suite)
        if cert.issuer != ours.issuer:
            raise _Refused(KeStatus.UNKNOWN_ISSUER, f"issuer {cert.issuer.hex()} is not our CA")
        problem = field_problem(cert, now if self.check_validity else None)
        if problem is not None:
            raise _Refused(KeStatus.INVALID_CERTIFICATE, problem)
        if subject_of(cert) != sender:
            raise _Refused(KeStatus.BAD_MESSAGE, f"the certificate is for "
                           f"{subject_of(cert):016x}, not the sender {sender:016x}")
        try:
            session.partner_static = self.compute(cbke.partner_static_key, session.suite,
                                                  identity, ours.ca_public_key)
        except CertificateError as exc:
            raise _Refused(KeStatus.INVALID_CERTIFICATE, str(exc)) from None
        session.partner_certificate = identity

    def _ephemeral(self, suite: int, payload: bytes) -> bytes:
        data = bytes(payload)
        if not cbke.check_ephemeral(suite, data):
            raise _Refused(KeStatus.BAD_MESSAGE, f"the ephemeral key ({len(data)} bytes) is not "
                           f"a compressed point of suite {suite}'s curve")
        return data

    def _new_ephemeral(self, session: _Session) -> None:
        assert session.suite is not None
        cred = self.credentials[session.suite]
        session.own_ephemeral = self.ephemeral_source(cred.curve)
        session.own_ephemeral_public = self.compute(cbke.ephemeral_public, session.suite,
                                                    session.own_ephemeral)

    def _derive(self, session: _Session) -> cbke.ExchangeKeys:
        assert session.suite is not None
        cred = self.credentials[session.suite]
        own = cred.cert.subject
        partner = session.ieee.to_bytes(8, "big")
        if session.initiator:
            ieee_u, ieee_v = own, partner
            qe_u, qe_v = session.own_ephemeral_public, session.partner_ephemeral_public
        else:
            ieee_u, ieee_v = partner, own
            qe_u, qe_v = session.partner_ephemeral_public, session.own_ephemeral_public
        try:
            return self.compute(cbke.derive, session.suite, own_static=cred.private_key,
                                own_ephemeral=session.own_ephemeral,
                                own_ephemeral_public=session.own_ephemeral_public,
                                partner_static_public=session.partner_static,
                                partner_ephemeral_public=session.partner_ephemeral_public,
                                ieee_u=ieee_u, ieee_v=ieee_v, qe_u=qe_u, qe_v=qe_v)
        except ValueError as exc:
            raise _Refused(KeStatus.BAD_MESSAGE, f"key agreement failed: {exc}") from None

    def _mac(self, req: Request) -> bytes:
        if len(req.payload) != ke.MAC_LENGTH:
            raise _Refused(KeStatus.BAD_MESSAGE,
                           f"a MAC is {ke.MAC_LENGTH} bytes, not {len(req.payload)}")
        return bytes(req.payload)

    def _established(self, session: _Session) -> KeyEstablished:
        """The exchange succeeded: close it and say so."""
        assert session.keys is not None and session.suite is not None
        done = KeyEstablished(session.ieee, session.nwk, session.keys.link_key, session.suite,
                              initiator=session.initiator,
                              partner_certificate=session.partner_certificate)
        self._close(session)
        LOGGER.info("key establishment: link key with %016x (suite %d, %s)", session.ieee,
                    session.suite, "initiator" if session.initiator else "responder")
        return done

    def _general(self, req: Request, now: float, to_server: bool) -> list[Effect]:
        known = foundation.GENERAL_COMMANDS.get(req.command_id)
        if known is None or (known.direction == Direction.Client_to_Server
                             and req.command_id != GC.Report_Attributes):
            # a request: our server's attribute, or (a server asking us) our client's copy
            return [self._reply_frame(req, f) for f in self.attributes.handle(req, now)]
        if to_server or req.command_id not in (GC.Read_Attributes_rsp, GC.Default_Response):
            return []  # answers we did not ask for, reports
        session = self._find(req)
        if session is None or not session.initiator:
            return []
        with session.lock:
            if session.closed:
                return []
            try:
                if req.command_id == GC.Read_Attributes_rsp:
                    if session.state != State.READ_SUITES:
                        return []
                    return self._suites_read(session, req, now)
                if len(req.payload) < 2 or req.payload[1] == Status.SUCCESS:
                    return []
                raise _Refused(None, f"the partner answered command 0x{req.payload[0]:02X} "
                               f"with Default Response {Status(req.payload[1]).name}",
                               send=False)
            except _Refused as exc:
                return self._refuse(session, exc, None)
            except Exception:  # noqa: BLE001
                return self._internal_error(session, None)

    # -- time ---------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Effect]:
        """Time out exchanges whose partner stayed silent; the initiator's retries."""
        with self._table:
            due = [s for s in self._sessions.values() if s.deadline <= now]
        out: list[Effect] = []
        for session in due:
            with session.lock:
                if session.closed or session.deadline > now:
                    continue
                out += self._timeout(session, now)
        return out

    def _timeout(self, session: _Session, now: float) -> list[Effect]:
        if session.initiator and session.state == State.BACKOFF:
            try:
                return self._start(session, now)
            except Exception:  # noqa: BLE001
                LOGGER.exception("key establishment restart failed")
                self._close(session)
                return [KeyEstablishmentFailed(session.ieee, session.nwk, None,
                                               "internal error", initiator=True)]
        what = session.state.value
        if session.initiator and session.attempts < self.retries:
            session.attempts += 1
            session.state = State.BACKOFF
            session.deadline = now + self.retry_delay
            LOGGER.info("key establishment with %016x: timed out %s; trying again",
                        session.ieee, what)
            return []
        self._close(session)
        LOGGER.info("key establishment with %016x: timed out %s", session.ieee, what)
        return [KeyEstablishmentFailed(session.ieee, session.nwk, None, f"timed out {what}",
                                       initiator=session.initiator)]

    # -- plumbing ---------------------------------------------------------------------------------
    def _find(self, req: Request) -> _Session | None:
        with self._table:
            if req.src_ieee is not None:
                return self._sessions.get(req.src_ieee)
            for s in self._sessions.values():
                if s.nwk == req.src_nwk:
                    return s
        return None

    def _close(self, session: _Session) -> None:
        """End an exchange (its lock is held)."""
        session.closed = True
        session.own_ephemeral = 0
        session.keys = None
        with self._table:
            if self._sessions.get(session.ieee) is session:
                del self._sessions[session.ieee]

    def _refuse(self, session: _Session, exc: _Refused, req: Request | None) -> list[Effect]:
        self._close(session)
        LOGGER.info("key establishment with %016x ended: %s (%s)", session.ieee,
                    "no Terminate" if exc.status is None else exc.status.name, exc.reason)
        out: list[Effect] = []
        if exc.send and exc.status is not None:
            suite = ke.SUITE_BITS.get(session.suite or 0, self.suite_value)
            if exc.status == KeStatus.UNSUPPORTED_SUITE:
                suite = self.suite_value  # what we do support
            payload = ke.schema(ke.TERMINATE, to_server=True)(
                status_code=exc.status, wait_time=self.terminate_wait_time,
                key_establishment_suite=suite).serialize()
            if session.initiator:
                out.append(self._request(session, ke.TERMINATE, payload))
            elif req is not None:
                out.append(self._reply(req, ke.TERMINATE, payload))
        out.append(KeyEstablishmentFailed(session.ieee, session.nwk, exc.status, exc.reason,
                                          initiator=session.initiator))
        return out

    def _internal_error(self, session: _Session, req: Request | None) -> list[Effect]:
        LOGGER.exception("key establishment with %016x failed", session.ieee)
        return self._refuse(session, _Refused(KeStatus.NO_RESOURCES, "internal error"), req)

    def _stray(self, req: Request) -> list[Effect]:
        """A KE command from a node we have no exchange with (or in the wrong role)."""
        if req.command_id == ke.TERMINATE:
            return []
        return [self._terminate_reply(req, KeStatus.BAD_MESSAGE, self.terminate_wait_time,
                                      self.suite_value, "no exchange in progress")]

    def _suite_of_bits(self, bits: int) -> int | None:
        for suite, bit in ke.SUITE_BITS.items():
            if bits == bit and suite in self.credentials:
                return suite
        return None

    def _initiate_payload(self, suite: int) -> bytes:
        return ke.schema(ke.INITIATE, to_server=True)(
            key_establishment_suite=ke.SUITE_BITS[suite],
            ephemeral_data_generate_time=self.eph_time,
            confirm_key_generate_time=self.confirm_time,
            identity=t.Bytes(self.credentials[suite].certificate)).serialize()

    def _next_tsn(self) -> int:
        with self._tsn_lock:
            self._tsn = (self._tsn + 1) & 0xFF
            return self._tsn

    def _request(self, session: _Session, command_id: int, payload: bytes, *,
                 general: bool = False) -> Reply:
        """A frame the initiator originates (client to server)."""
        session.tsn = self._next_tsn()
        make = foundation.ZCLHeader.general if general else foundation.ZCLHeader.cluster
        frame = build_frame(make(session.tsn, command_id), payload)
        return Reply(dst_nwk=session.nwk, dst_ep=session.endpoint, src_ep=self.endpoint,
                     profile_id=SE_PROFILE, cluster_id=ke.CLUSTER_ID, data=frame)

    def _reply_frame(self, req: Request, frame: bytes) -> Reply:
        return Reply(dst_nwk=req.src_nwk, dst_ep=req.src_ep, src_ep=self.endpoint,
                     profile_id=SE_PROFILE, cluster_id=ke.CLUSTER_ID, data=frame)

    def _reply(self, req: Request, command_id: int, payload: bytes) -> Reply:
        """The answer to ``req`` (its TSN, the other direction)."""
        return self._reply_frame(
            req, build_frame(response_header(req, command_id, general=False), payload))

    def _terminate_reply(self, req: Request, status: KeStatus, wait: int, suite: int,
                         reason: str) -> Reply:
        LOGGER.info("key establishment: terminating with 0x%04X (%s): %s", req.src_nwk,
                    status.name, reason)
        payload = ke.schema(ke.TERMINATE, to_server=True)(
            status_code=status, wait_time=wait, key_establishment_suite=suite).serialize()
        return self._reply(req, ke.TERMINATE, payload)

    def _default(self, req: Request, status: Status) -> list[Effect]:
        if req.broadcast:
            return []
        return [self._reply_frame(req, default_response(req, status))]
