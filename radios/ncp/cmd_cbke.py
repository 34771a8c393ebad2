"""EZSP command handlers: Certificate-Based Key Establishment (CBKE), suites 1 and 2.

What an EmberZNet 7.x stick with the CBKE libraries answers (Silicon Labs UG100 "CBKE
frames" and the ``cbke-crypto-engine.h`` API reference), for sect163k1 (suite 1) and
sect283k1 (suite 2, the ``...283k1`` frames):

- ``getCertificate[283k1]``: the certificate in the CBKE manufacturing token; ``ERR_FATAL``
  when the token holds nothing;
- ``setPreinstalledCbkeData`` (suite 1: CA public key, certificate, private key in one
  frame) and, for suite 2, ``setValue(VALUE_CERTIFICATE_283K1 / VALUE_PUBLIC_KEY_283K1 /
  VALUE_PRIVATE_KEY_283K1)`` then ``savePreinstalledCbkeData283k1``: a one-time write of
  the token (``ERR_FLASH_WRITE_INHIBITED`` once written). When the certificate's subject
  is not the stick's EUI-64, the stick takes that EUI-64 (``INVALID_CALL`` while the
  network is up, ``BAD_ARGUMENT`` when a custom EUI-64 is already written);
- ``generateCbkeKeys[283k1]`` -> ``OPERATION_IN_PROGRESS``, then
  ``generateCbkeKeysHandler[283k1](status, ephemeralPublicKey)``;
- ``calculateSmacs[283k1](amInitiator, partnerCertificate, partnerEphemeralPublicKey)`` ->
  ``OPERATION_IN_PROGRESS``, then ``calculateSmacsHandler[283k1](status, initiatorSmac,
  responderSmac)``: both MACs of SE 1.4 C.4.2 (MACU, MACV), whichever role we play, so the
  host compares the one its partner sent; the link key waits in RAM;
- ``clearTemporaryDataMaybeStoreLinkKey[283k1](storeLinkKey)``: forgets the ephemeral
  keys; with ``True`` puts the link key in the key table for the partner certificate's
  subject (``SUCCESS``), with ``False`` discards it and answers ``ERR_FATAL`` (always, as
  the API reference says);
- ``dsaVerify`` / ``dsaVerify283k1(digest, signerCertificate, receivedSig)`` ->
  ``OPERATION_IN_PROGRESS``, then ``dsaVerifyHandler(SUCCESS | SIGNATURE_VERIFY_FAILURE)``
  (the signer's key is reconstructed with the CA public key of the token);
- ``dsaSign(message)`` (suite 1 only, as on the stick): the last byte of the message says how
  many leading bytes are not signed; ``dsaSignHandler`` returns the message with that byte
  replaced by 0x01 and the signature (r ‖ s) appended.

One ECC operation runs at a time (the stick has one crypto engine): another one asked for
meanwhile answers ``INVALID_CALL``; so does ``calculateSmacs`` before ``generateCbkeKeys``.
Without CBKE data in the token, the operations that need it answer ``ERR_FATAL`` (as
``getCertificate`` does); without a :class:`CbkeEngine` (the EC library) every ECC
operation answers ``LIBRARY_NOT_PRESENT``.

The EC maths is not here (``radios`` knows no elliptic curve): it is a :class:`CbkeEngine`
given by the composition (``sep ncp-emulator`` wires :class:`sep.security.cbke_engine.
SepCbkeEngine`), run by a runner the shell gives (:mod:`radios.ncp.server` uses a worker
thread, so the event loop keeps serving; without one it runs inline). The results come back
as callbacks, flushed to the host by ``cbke_output``.

Storing a key: the entry goes into :attr:`NcpState.link_keys` (replacing one for the same
EUI-64), and the radio is told with ``radio.link_key_imported(ieee: str, key: bytes)`` when
it has that hook, so the node secures its APS frames with that partner by the new key.

A mixin of :class:`radios.ncp.ezsp.EzspNcp`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import bellows.types as bt

if TYPE_CHECKING:
    from radios.ncp.state import NcpState

LOGGER = logging.getLogger("radios.ncp.ezsp")

E = bt.EmberStatus

#: (CA public key, certificate, private key) sizes in bytes, by suite
SIZES: dict[int, tuple[int, int, int]] = {1: (22, 48, 21), 2: (37, 74, 36)}
#: the manufacturing tokens holding a suite's CA public key ‖ certificate ‖ private key
TOKENS: dict[int, str] = {1: "mfg_cbke_data", 2: "mfg_cbke_283k1_data"}
#: where a certificate carries its subject's EUI-64 (most significant byte first)
SUBJECT: dict[int, slice] = {1: slice(22, 30), 2: slice(28, 36)}
SIGNATURE_TYPE_ECDSA = 0x01


@dataclasses.dataclass(frozen=True)
class CbkeData:
    """One suite's preinstalled data (the MFG token)."""

    ca_public_key: bytes
    certificate: bytes
    private_key: bytes  # big-endian scalar

    def to_bytes(self) -> bytes:
        return self.ca_public_key + self.certificate + self.private_key

    @classmethod
    def from_bytes(cls, suite: int, data: bytes) -> CbkeData:
        ca, cert, key = SIZES[suite]
        if len(data) != ca + cert + key:
            raise ValueError(f"suite {suite} CBKE data is {ca + cert + key} bytes, not {len(data)}")
        return cls(data[:ca], data[ca:ca + cert], data[ca + cert:])

    @property
    def subject(self) -> bytes:
        return subject_of(self.certificate)


def subject_of(certificate: bytes) -> bytes:
    """The subject EUI-64 of a 48- or 74-byte certificate, most significant byte first."""
    suite = 1 if len(certificate) == SIZES[1][1] else 2
    return bytes(certificate[SUBJECT[suite]])


def eui64_text(subject: bytes) -> str:
    """A certificate's subject (MSB first) as an EUI-64 string like bellows prints it."""
    return str(bt.EUI64(bytes(subject)[::-1]))


class SmacResult(Protocol):
    """What ``calculateSmacs`` computes: the two MACs and the link key (not yet stored)."""

    @property
    def initiator_smac(self) -> bytes: ...  # MACU

    @property
    def responder_smac(self) -> bytes: ...  # MACV

    @property
    def link_key(self) -> bytes: ...


class CbkeEngine(Protocol):
    """The EC maths of CBKE (implemented in ``sep``). Each method is plain CPU work on
    bytes, run in a worker; it raises ``ValueError`` for input it cannot use (a partner key
    or certificate that is not a curve point), which the stick reports as a failed
    operation."""

    def generate_keys(self, suite: int) -> tuple[bytes, bytes]:
        """A new ephemeral key pair: (private scalar, compressed public key)."""
        ...

    def calculate_smacs(self, suite: int, own: CbkeData, ephemeral_private: bytes,
                        ephemeral_public: bytes, am_initiator: bool, partner_certificate: bytes,
                        partner_ephemeral_public: bytes) -> SmacResult: ...

    def dsa_verify(self, suite: int, ca_public_key: bytes, digest: bytes,
                   signer_certificate: bytes, signature: bytes) -> bool:
        """True for a valid signature (r ‖ s) of ``digest`` by the certificate's subject."""
        ...

    def dsa_sign(self, suite: int, private_key: bytes, data: bytes) -> bytes:
        """The signature (r ‖ s) of the AES-MMO digest of ``data``."""
        ...


#: runs ``job`` off the caller's thread and calls ``done(result, error)`` back on it
Runner = Callable[[Callable[[], Any], Callable[[Any, BaseException | None], None]], None]


def run_inline(job: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
    try:
        result = job()
    except Exception as exc:  # noqa: BLE001 - reported to done
        done(None, exc)
        return
    done(result, None)


@dataclasses.dataclass
class _Temp:
    """One suite's temporary data (RAM): the ephemeral pair, then the unconfirmed key."""

    ephemeral_private: bytes = b""
    ephemeral_public: bytes = b""
    link_key: bytes | None = None
    partner: str | None = None  # EUI-64 of the partner certificate's subject


class CbkeCommands:
    """``cmd_*`` handlers for CBKE (both suites) and the ECC signature commands."""

    if TYPE_CHECKING:  # what these handlers use from the EzspNcp core
        state: NcpState
        radio: Any
        network_up: bool
        config: dict[int, int]
        values: dict[int, bytes]
        on_persist: Callable[[], None]

        def callback(self, name: str, **fields: Any) -> None: ...

        def _event(self, text: str) -> None: ...

    #: the EC library (None: a stick without it); set by :meth:`cbke_attach`
    cbke_engine: CbkeEngine | None = None
    cbke_runner: Runner = staticmethod(run_inline)
    cbke_output: Callable[[], None] = staticmethod(lambda: None)

    def cbke_attach(self, engine: CbkeEngine | None, *, runner: Runner | None = None,
                    output: Callable[[], None] | None = None) -> None:
        """Give the NCP its EC library, the runner of its maths, and the hook that sends
        queued callbacks to the host (the shell's flush)."""
        self.cbke_engine = engine
        if runner is not None:
            self.cbke_runner = runner
        if output is not None:
            self.cbke_output = output

    def cbke_reset(self) -> None:
        """RAM lost (an NCP reset): temporary data gone, a running operation's result too."""
        self._cbke_epoch = getattr(self, "_cbke_epoch", 0) + 1
        self._cbke_busy = False
        self._cbke_temp: dict[int, _Temp] = {1: _Temp(), 2: _Temp()}

    # -- the token ------------------------------------------------------------------------
    def cbke_data(self, suite: int) -> CbkeData | None:
        stored = self.state.tokens.get(TOKENS[suite])
        if stored is None:
            return None
        try:
            return CbkeData.from_bytes(suite, bytes.fromhex(stored))
        except ValueError:
            LOGGER.warning("NCP: the suite %d CBKE token is corrupt; ignored", suite)
            return None

    def cbke_provision(self, suite: int, data: CbkeData) -> None:
        """Write the token as the factory does (``--cert``): no one-time check."""
        CbkeData.from_bytes(suite, data.to_bytes())  # sizes
        if eui64_text(data.subject) != str(self.state.ieee):
            LOGGER.warning("NCP: the suite %d certificate is for %s, the stick is %s", suite,
                           eui64_text(data.subject), self.state.ieee)
        self.state.tokens[TOKENS[suite]] = data.to_bytes().hex()
        self.on_persist()

    def _cbke_install(self, suite: int, data: CbkeData) -> E:
        if self.cbke_data(suite) is not None:
            return E.ERR_FLASH_WRITE_INHIBITED
        subject = eui64_text(data.subject)
        if subject != str(self.state.ieee):
            if self.network_up:
                return E.INVALID_CALL
            if self.state.restored_eui64 is not None:
                return E.BAD_ARGUMENT
            self.state.restored_eui64 = subject
            self._event(f"EUI-64 is now {subject}, the CBKE certificate's subject")
        self.state.tokens[TOKENS[suite]] = data.to_bytes().hex()
        self.on_persist()
        self._event(f"suite {suite} CBKE data preinstalled for {subject}")
        return E.SUCCESS

    def cmd_setPreinstalledCbkeData(self, caPublic: Any, myCert: Any, myKey: Any) -> dict:
        return {"status": self._cbke_install(1, CbkeData(bytes(caPublic), bytes(myCert),
                                                         bytes(myKey)))}

    def cmd_savePreinstalledCbkeData283k1(self) -> dict:
        vid = bt.EzspValueId
        parts = [self.values.get(int(v)) for v in (vid.VALUE_PUBLIC_KEY_283K1,
                                                   vid.VALUE_CERTIFICATE_283K1,
                                                   vid.VALUE_PRIVATE_KEY_283K1)]
        if any(p is None for p in parts):
            return {"status": E.ERR_FATAL}
        try:
            data = CbkeData.from_bytes(2, b"".join(parts))  # type: ignore[arg-type]
        except ValueError as exc:
            LOGGER.warning("NCP: savePreinstalledCbkeData283k1: %s", exc)
            return {"status": E.BAD_ARGUMENT}
        lengths = tuple(len(p) for p in parts)  # type: ignore[arg-type]
        if lengths != SIZES[2]:
            return {"status": E.BAD_ARGUMENT}
        return {"status": self._cbke_install(2, data)}

    def cmd_getCertificate(self) -> dict:
        return self._certificate(1, bt.EmberCertificateData)

    def cmd_getCertificate283k1(self) -> dict:
        return self._certificate(2, bt.EmberCertificate283k1Data)

    def _certificate(self, suite: int, kind: Any) -> dict:
        data = self.cbke_data(suite)
        if data is None:
            return {"status": E.ERR_FATAL, "localCert": kind(b"\xff" * SIZES[suite][1])}
        return {"status": E.SUCCESS, "localCert": kind(data.certificate)}

    # -- ECC operations -------------------------------------------------------------------
    def _cbke_can_start(self, suite: int | None) -> E | None:
        """Why an ECC operation cannot start now (None: it can)."""
        if not hasattr(self, "_cbke_temp"):
            self.cbke_reset()
        if self.cbke_engine is None:
            return E.LIBRARY_NOT_PRESENT
        if self._cbke_busy:
            return E.INVALID_CALL
        if suite is not None and self.cbke_data(suite) is None:
            return E.ERR_FATAL
        return None

    def _cbke_run(self, what: str, job: Callable[[], Any],
                  finish: Callable[[Any, BaseException | None], None]) -> None:
        epoch = self._cbke_epoch
        self._cbke_busy = True

        def done(result: Any, error: BaseException | None) -> None:
            if epoch != self._cbke_epoch:
                LOGGER.info("NCP: %s finished after a reset; result dropped", what)
                return
            self._cbke_busy = False
            if error is not None and not isinstance(error, ValueError):
                LOGGER.error("NCP: %s failed: %r", what, error)
            elif error is not None:
                LOGGER.info("NCP: %s: %s", what, error)
            finish(result, error)
            self.cbke_output()

        self.cbke_runner(job, done)

    def cmd_generateCbkeKeys(self) -> dict:
        return self._generate(1, "generateCbkeKeysHandler", bt.EmberPublicKeyData)

    def cmd_generateCbkeKeys283k1(self) -> dict:
        return self._generate(2, "generateCbkeKeysHandler283k1", bt.EmberPublicKey283k1Data)

    def _generate(self, suite: int, handler: str, kind: Any) -> dict:
        refused = self._cbke_can_start(suite)
        if refused is not None:
            return {"status": refused}
        engine = self.cbke_engine
        assert engine is not None
        self._cbke_temp[suite] = _Temp()

        def finish(result: tuple[bytes, bytes] | None, error: BaseException | None) -> None:
            if result is None:
                self.callback(handler, status=E.ERR_FATAL,
                              ephemeralPublicKey=kind(bytes(SIZES[suite][0])))
                return
            private, public = result
            self._cbke_temp[suite] = _Temp(ephemeral_private=private, ephemeral_public=public)
            self.callback(handler, status=E.SUCCESS, ephemeralPublicKey=kind(public))

        self._cbke_run(f"generateCbkeKeys (suite {suite})",
                       lambda: engine.generate_keys(suite), finish)
        return {"status": E.OPERATION_IN_PROGRESS}

    def cmd_calculateSmacs(self, amInitiator: Any, partnerCertificate: Any,
                           partnerEphemeralPublicKey: Any) -> dict:
        return self._smacs(1, "calculateSmacsHandler", bool(amInitiator),
                           bytes(partnerCertificate), bytes(partnerEphemeralPublicKey))

    def cmd_calculateSmacs283k1(self, amInitiator: Any, partnerCertificate: Any,
                                partnerEphemeralPublicKey: Any) -> dict:
        return self._smacs(2, "calculateSmacsHandler283k1", bool(amInitiator),
                           bytes(partnerCertificate), bytes(partnerEphemeralPublicKey))

    def _smacs(self, suite: int, handler: str, initiator: bool, certificate: bytes,
               ephemeral: bytes) -> dict:
        refused = self._cbke_can_start(suite)
        if refused is not None:
            return {"status": refused}
        temp = self._cbke_temp[suite]
        if not temp.ephemeral_private:
            return {"status": E.INVALID_CALL}  # generateCbkeKeys first
        engine, own = self.cbke_engine, self.cbke_data(suite)
        assert engine is not None and own is not None
        temp.link_key, temp.partner = None, None
        zero = bt.EmberSmacData(bytes(16))

        def finish(result: SmacResult | None, error: BaseException | None) -> None:
            if result is None:
                self.callback(handler, status=E.ERR_FATAL, initiatorSmac=zero,
                              responderSmac=zero)
                return
            temp.link_key, temp.partner = result.link_key, eui64_text(subject_of(certificate))
            self.callback(handler, status=E.SUCCESS,
                          initiatorSmac=bt.EmberSmacData(result.initiator_smac),
                          responderSmac=bt.EmberSmacData(result.responder_smac))

        private, public = temp.ephemeral_private, temp.ephemeral_public
        self._cbke_run(f"calculateSmacs (suite {suite})", lambda: engine.calculate_smacs(
            suite, own, private, public, initiator, certificate, ephemeral), finish)
        return {"status": E.OPERATION_IN_PROGRESS}

    def cmd_clearTemporaryDataMaybeStoreLinkKey(self, storeLinkKey: Any) -> dict:
        return {"status": self._clear(1, bool(storeLinkKey))}

    def cmd_clearTemporaryDataMaybeStoreLinkKey283k1(self, storeLinkKey: Any) -> dict:
        return {"status": self._clear(2, bool(storeLinkKey))}

    def _clear(self, suite: int, store: bool) -> E:
        if not hasattr(self, "_cbke_temp"):
            self.cbke_reset()
        if self._cbke_busy:
            return E.INVALID_CALL
        temp, self._cbke_temp[suite] = self._cbke_temp[suite], _Temp()
        if not store:
            return E.ERR_FATAL  # "always", says the API reference
        if temp.link_key is None or temp.partner is None:
            return E.INVALID_CALL  # no key calculated
        return self._store_link_key(temp.partner, temp.link_key)

    def _store_link_key(self, ieee: str, key: bytes) -> E:
        from radios.ncp.state import LinkKey

        size = self.config.get(int(bt.EzspConfigId.CONFIG_KEY_TABLE_SIZE), 4)
        keys = [k for k in self.state.link_keys if k.ieee != ieee]
        if len(keys) >= size:
            return E.TABLE_FULL
        keys.append(LinkKey(ieee=ieee, key=key.hex()))
        self.state.link_keys = keys
        self.on_persist()
        hook = getattr(self.radio, "link_key_imported", None)
        if hook is not None:
            hook(ieee, key)
        self._event(f"CBKE link key stored for {ieee}")
        return E.SUCCESS

    def cmd_dsaVerify(self, digest: Any, signerCertificate: Any, receivedSig: Any) -> dict:
        return self._verify(1, bytes(digest), bytes(signerCertificate), bytes(receivedSig))

    def cmd_dsaVerify283k1(self, digest: Any, signerCertificate: Any, receivedSig: Any) -> dict:
        return self._verify(2, bytes(digest), bytes(signerCertificate), bytes(receivedSig))

    def _verify(self, suite: int, digest: bytes, certificate: bytes, signature: bytes) -> dict:
        refused = self._cbke_can_start(suite)
        if refused is not None:
            return {"status": refused}
        engine, own = self.cbke_engine, self.cbke_data(suite)
        assert engine is not None and own is not None

        def finish(valid: bool | None, error: BaseException | None) -> None:
            if valid is None and error is not None and not isinstance(error, ValueError):
                self.callback("dsaVerifyHandler", status=E.ERR_FATAL)
                return
            self.callback("dsaVerifyHandler",
                          status=E.SUCCESS if valid else E.SIGNATURE_VERIFY_FAILURE)

        self._cbke_run(f"dsaVerify (suite {suite})", lambda: engine.dsa_verify(
            suite, own.ca_public_key, digest, certificate, signature), finish)
        return {"status": E.OPERATION_IN_PROGRESS}

    def cmd_dsaSign(self, messageContents: Any) -> dict:
        refused = self._cbke_can_start(1)
        if refused is not None:
            return {"status": refused}
        message = bytes(messageContents)
        if not message or message[-1] > len(message) - 1:
            return {"status": E.BAD_ARGUMENT}
        engine, own = self.cbke_engine, self.cbke_data(1)
        assert engine is not None and own is not None
        body, skip = message[:-1], message[-1]

        def finish(signature: bytes | None, error: BaseException | None) -> None:
            if signature is None:
                self.callback("dsaSignHandler", status=E.ERR_FATAL, messageContents=message)
                return
            self.callback("dsaSignHandler", status=E.SUCCESS,
                          messageContents=body + bytes([SIGNATURE_TYPE_ECDSA]) + signature)

        self._cbke_run("dsaSign", lambda: engine.dsa_sign(1, own.private_key, body[skip:]),
                       finish)
        return {"status": E.OPERATION_IN_PROGRESS}
