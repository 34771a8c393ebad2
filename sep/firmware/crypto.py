"""The firmware area's view of :mod:`sep.security`: one place that loads it and adapts it.

Loading is lazy and total: :func:`load` either returns a :class:`Crypto` whose every needed name
exists, or raises :class:`CryptoUnavailable`. The verifier turns that into a rejection
(``CRYPTO_UNAVAILABLE``) -- a missing or broken crypto module never means "skip the check".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from sep.firmware.format import SUITES, Suite

HASH_CHUNK = 64 * 1024

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


class CryptoUnavailable(Exception):
    """``sep.security`` is missing or lacks a name this area needs."""


@dataclass(frozen=True)
class Crypto:
    aes_mmo: ModuleType
    curves: ModuleType
    ecdsa: ModuleType
    ecqv: ModuleType

    def curve(self, suite: Suite) -> Any:
        return self.curves.SECT163K1 if suite.number == 1 else self.curves.SECT283K1

    def certificate_class(self, suite: Suite) -> Any:
        return self.ecqv.Suite1Certificate if suite.number == 1 else self.ecqv.Suite2Certificate

    def point_to_bytes(self, suite: Suite, point: Any) -> bytes:
        return bytes(self.curves.point_to_bytes(self.curve(suite), point, compressed=True))

    def point_from_bytes(self, suite: Suite, data: bytes) -> Any:
        return self.curves.point_from_bytes(self.curve(suite), bytes(data))

    def hasher(self) -> Any:
        return self.aes_mmo.AesMmo()


_REQUIRED = {
    "aes_mmo": ("aes_mmo", "AesMmo"),
    "curves": ("SECT163K1", "SECT283K1", "point_to_bytes", "point_from_bytes"),
    "ecdsa": ("generate_private_key", "public_key", "sign", "verify"),
    "ecqv": ("Suite1Certificate", "Suite2Certificate", "reconstruct_public_key"),
}


@functools.cache
def load() -> Crypto:
    """Import and check ``sep.security``; raise :class:`CryptoUnavailable` on any problem."""
    import importlib

    modules: dict[str, ModuleType] = {}
    for name, attrs in _REQUIRED.items():
        try:
            mod = importlib.import_module(f"sep.security.{name}")
        except Exception as exc:  # ImportError, or a module broken at import time
            raise CryptoUnavailable(f"sep.security.{name}: {type(exc).__name__}: {exc}") from exc
        missing = [a for a in attrs if not hasattr(mod, a)]
        if missing:
            raise CryptoUnavailable(f"sep.security.{name} lacks {', '.join(missing)}")
        modules[name] = mod
    return Crypto(**modules)


def stream_digests(
    crypto: Crypto,
    data: bytes,
    marks: list[int],
    *,
    progress: Progress | None = None,
) -> dict[int, bytes]:
    """AES-MMO of ``data[:m]`` for every ``m`` in ``marks``, in one streaming pass.

    The hasher is copied at each mark, so a 1 MiB image is hashed once however many digests it
    needs (integrity code and signature).
    """
    out: dict[int, bytes] = {}
    h = crypto.hasher()
    pos = 0
    total = max(marks) if marks else 0
    view = memoryview(data)
    for mark in sorted(set(marks)):
        while pos < mark:
            step = min(HASH_CHUNK, mark - pos)
            h.update(bytes(view[pos : pos + step]))
            pos += step
            if progress is not None:
                progress(pos, total)
        out[mark] = bytes(h.copy().digest())
    return out


@functools.lru_cache(maxsize=64)
def reconstruct_public_key(
    crypto: Crypto, suite_number: int, certificate: bytes, ca_public_key: bytes
) -> Any:
    """ECQV public-key reconstruction (cached: it is a pure function of its inputs)."""
    suite = SUITES[suite_number]
    cert = crypto.certificate_class(suite).from_bytes(certificate)
    ca_point = crypto.point_from_bytes(suite, ca_public_key)
    return crypto.ecqv.reconstruct_public_key(cert, ca_point)
