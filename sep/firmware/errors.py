"""The one error type of the firmware area: :class:`ImageError` with a machine-readable reason.

Every rejection of an OTA file -- by the parser, the manifest reader, the verifier or the
policy -- is an ``ImageError``. ``reason`` is a :class:`Reason` (a ``str`` enum, so it
serialises to JSON as its name); ``message`` is for humans.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # --- structure (parser) -------------------------------------------------------------
    TRUNCATED_HEADER = "TRUNCATED_HEADER"  # fewer bytes than the header needs
    BAD_MAGIC = "BAD_MAGIC"  # upgrade file identifier is not 0x0BEEF11E
    BAD_HEADER_VERSION = "BAD_HEADER_VERSION"  # not 0x0100
    BAD_FIELD_CONTROL = "BAD_FIELD_CONTROL"  # reserved field-control bits set
    BAD_HEADER_LENGTH = "BAD_HEADER_LENGTH"  # != length implied by field control / outside 56..69
    BAD_HARDWARE_RANGE = "BAD_HARDWARE_RANGE"  # minimum hardware version > maximum
    SIZE_MISMATCH = "SIZE_MISMATCH"  # total image size field != file length
    TRUNCATED_ELEMENT = "TRUNCATED_ELEMENT"  # sub-element header or data runs past the end
    BAD_ELEMENT_LENGTH = "BAD_ELEMENT_LENGTH"  # fixed-size element with the wrong length
    UNKNOWN_TAG = "UNKNOWN_TAG"  # tag neither defined by the spec nor manufacturer-specific
    DUPLICATE_TAG = "DUPLICATE_TAG"  # the same tag twice
    NO_UPGRADE_IMAGE = "NO_UPGRADE_IMAGE"  # no (or an empty) upgrade image element
    BOTH_SUITES = "BOTH_SUITES"  # suite-1 and suite-2 elements in one file
    NO_SIGNATURE = "NO_SIGNATURE"  # unsigned file, or certificate without signature
    NO_CERTIFICATE = "NO_CERTIFICATE"  # signature without the certificate of its suite
    SIGNATURE_NOT_LAST = "SIGNATURE_NOT_LAST"  # signature element is not the last element
    INTEGRITY_CODE_MISPLACED = "INTEGRITY_CODE_MISPLACED"  # see format.py for the rule
    # --- manifest -------------------------------------------------------------------------
    NO_MANIFEST = "NO_MANIFEST"  # our manifest element (0xF000) is required but absent
    BAD_MANIFEST = "BAD_MANIFEST"  # the manifest does not decode
    MANIFEST_MISMATCH = "MANIFEST_MISMATCH"  # manifest disagrees with the header/payload length
    BAD_CRC = "BAD_CRC"  # CRC-32 of the payload differs from the manifest
    # --- crypto (verifier) -------------------------------------------------------------------
    CRYPTO_UNAVAILABLE = "CRYPTO_UNAVAILABLE"  # the security module is missing or broken
    UNTRUSTED_SUITE = "UNTRUSTED_SUITE"  # no CA of the image's crypto suite is trusted
    SIGNER_NOT_ALLOWED = "SIGNER_NOT_ALLOWED"  # signer IEEE not on the allow-list
    BAD_CERTIFICATE = "BAD_CERTIFICATE"  # certificate does not decode / reconstruct
    CERT_SUBJECT_MISMATCH = "CERT_SUBJECT_MISMATCH"  # certificate subject != signer IEEE
    CERT_ISSUER_MISMATCH = "CERT_ISSUER_MISMATCH"  # certificate issuer != our CA
    BAD_SIGNATURE = "BAD_SIGNATURE"  # ECDSA verification failed
    BAD_INTEGRITY_CODE = "BAD_INTEGRITY_CODE"  # AES-MMO integrity code differs
    # --- policy -----------------------------------------------------------------------------
    WRONG_MANUFACTURER = "WRONG_MANUFACTURER"
    WRONG_IMAGE_TYPE = "WRONG_IMAGE_TYPE"
    METROLOGY_REFUSED = "METROLOGY_REFUSED"  # metrology firmware is never updated over the air
    HARDWARE_MISMATCH = "HARDWARE_MISMATCH"  # our hardware version outside the image's range
    DOWNGRADE = "DOWNGRADE"  # file version not greater than the running one
    WRONG_DESTINATION = "WRONG_DESTINATION"  # device-specific file for another device
    # --- I/O (CLI) ----------------------------------------------------------------------------
    UNREADABLE = "UNREADABLE"  # the file could not be read


class ImageError(Exception):
    """An OTA file was rejected. ``reason`` is machine-readable, ``message`` human."""

    def __init__(self, reason: Reason, message: str, *, offset: int | None = None) -> None:
        self.reason = Reason(reason)
        self.message = message
        self.offset = offset  # byte offset in the file the problem was found at, if known
        super().__init__(f"{self.reason}: {message}")

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"reason": str(self.reason), "message": self.message}
        if self.offset is not None:
            out["offset"] = self.offset
        return out

    def __repr__(self) -> str:
        return f"ImageError({self.reason!s}, {self.message!r})"
