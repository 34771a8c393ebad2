"""Crypto figures: AES-MMO throughput, scalar multiplications/s, ECDSA sign/verify time.

    .venv/bin/python bench/bench_crypto.py
"""

from __future__ import annotations

import os
import time

from sep.security import ecdsa
from sep.security.aes_mmo import aes_mmo
from sep.security.curves import SECT163K1, SECT283K1


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t) / repeat)
    return best


def main() -> None:
    for size in (256 * 1024, 1024 * 1024):
        data = os.urandom(size)
        s = timed(lambda data=data: aes_mmo(data), 2)
        print(f"AES-MMO {size // 1024:5d} KiB: {s * 1000:7.1f} ms  ({size / s / 1e6:.2f} MB/s)")
    for curve in (SECT163K1, SECT283K1):
        k = ecdsa.generate_private_key(curve)
        s = timed(lambda curve=curve, k=k: curve.mul(k, curve.G), 10)
        d = ecdsa.generate_private_key(curve)
        Q = ecdsa.public_key(curve, d)
        digest = os.urandom(16)
        r, sig_s = ecdsa.sign(curve, d, digest)
        sign = timed(lambda curve=curve, d=d, digest=digest: ecdsa.sign(curve, d, digest), 5)
        verify = timed(lambda curve=curve, Q=Q, r=r, sig_s=sig_s, digest=digest: ecdsa.verify(
            curve, Q, digest, r, sig_s), 5)
        print(f"{curve.name}: scalar mult {s * 1000:6.1f} ms ({1 / s:6.1f}/s), "
              f"ECDSA sign {sign * 1000:6.1f} ms, verify {verify * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
