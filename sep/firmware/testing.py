"""Helpers for tests and benchmarks: throw-away key material and re-signing of edited files.

Nothing here is used by the product code paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import zigpy.types as t

from sep.firmware import crypto as _crypto
from sep.firmware.builder import Signer
from sep.firmware.format import SUITES, parse_image
from sep.firmware.keys import CAKeys, generate_ca, issue_signer
from sep.firmware.verify import TrustStore


@dataclass(frozen=True)
class TestKeys:
    __test__ = False  # not a pytest class

    ca: CAKeys
    signer: Signer

    def trust(self, *extra_signers: t.EUI64, require_manifest: bool = True) -> TrustStore:
        store = TrustStore.of(self.ca.trusted(), allowed_signers={self.signer.ieee, *extra_signers})
        return TrustStore(
            cas=store.cas,
            allowed_signers=store.allowed_signers,
            require_manifest=require_manifest,
        )


def make_keys(
    suite: int = 1, *, issuer: bytes | None = None, ieee: t.EUI64 | None = None
) -> TestKeys:
    ca = generate_ca(suite, issuer=issuer)
    return TestKeys(ca=ca, signer=issue_signer(ca, ieee))


def resign(data: bytes, signer: Signer) -> bytes:
    """Replace r||s of a (possibly edited) signed file with a fresh signature by ``signer``.

    The file must still parse. Tests use this to build files that are correctly signed but wrong
    in some other way (integrity code, manifest CRC ...).
    """
    image = parse_image(data)
    sig = image.signature
    assert sig is not None
    crypto = _crypto.load()
    digest = _crypto.stream_digests(crypto, data, [sig.rs_offset])[sig.rs_offset]
    suite = SUITES[signer.suite]
    r, s = crypto.ecdsa.sign(crypto.curve(suite), signer.private_key, digest)
    n = suite.scalar_length
    return data[: sig.rs_offset] + int(r).to_bytes(n, "big") + int(s).to_bytes(n, "big")


def fix_integrity_code(data: bytes) -> bytes:
    """Recompute the integrity code of an edited file (before re-signing it)."""
    image = parse_image(data)
    ic = image.integrity_code
    assert ic is not None
    crypto = _crypto.load()
    code = _crypto.stream_digests(crypto, data, [ic.offset])[ic.offset]
    return data[: ic.data_offset] + code + data[ic.end :]


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)
