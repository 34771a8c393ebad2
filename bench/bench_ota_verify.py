"""How long does verifying an OTA file take? Prints figures; not a timed test.

For 256 KiB and 1 MiB payloads and both crypto suites, splits a full verification into
  * AES-MMO hashing of the file (one streaming pass; the throughput the meter sees), and
  * the elliptic-curve part: ECQV public-key reconstruction + ECDSA verification,
and reports the total through ``verify_image`` (parse, hashing, EC maths, manifest CRC).

    .venv/bin/python bench/bench_ota_verify.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sep.firmware import crypto as fw_crypto  # noqa: E402
from sep.firmware.builder import build_image  # noqa: E402
from sep.firmware.format import SUITES, parse_image  # noqa: E402
from sep.firmware.testing import TestKeys, make_keys  # noqa: E402
from sep.firmware.verify import verify_image  # noqa: E402

SIZES = {"256 KiB": 256 * 1024, "1 MiB": 1024 * 1024}


def best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def bench_one(crypto: fw_crypto.Crypto, keys: TestKeys, size: int, repeat: int) -> dict[str, float]:
    trust = keys.trust()
    suite = SUITES[keys.ca.suite]
    curve = crypto.curve(suite)
    data = build_image(
        os.urandom(size), manufacturer_code=0x1234, image_type=1, file_version=2, signer=keys.signer
    )
    image = parse_image(data)
    sig, cert_bytes = image.signature, image.certificate
    assert sig is not None and cert_bytes is not None
    marks = [sig.rs_offset]
    hash_s, _ = best(lambda: fw_crypto.stream_digests(crypto, data, marks), repeat)
    digest = fw_crypto.stream_digests(crypto, data, marks)[sig.rs_offset]

    def reconstruct() -> object:
        cert = crypto.certificate_class(suite).from_bytes(cert_bytes)
        ca = crypto.point_from_bytes(suite, keys.ca.public_key)
        return crypto.ecqv.reconstruct_public_key(cert, ca)

    ecqv_s, _ = best(reconstruct, repeat)
    q = reconstruct()
    ecdsa_s, _ = best(lambda: crypto.ecdsa.verify(curve, q, digest, sig.r, sig.s), repeat)

    def full() -> None:
        fw_crypto.reconstruct_public_key.cache_clear()  # include the reconstruction
        assert verify_image(data, trust).valid

    total_s, total_median = best(full, repeat)
    return {
        "bytes": len(data),
        "hash_s": hash_s,
        "ecqv_s": ecqv_s,
        "ecdsa_s": ecdsa_s,
        "total_s": total_s,
        "total_median": total_median,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    crypto = fw_crypto.load()
    print(f"python {sys.version.split()[0]}, best (and median for the total) of {args.repeat} runs")
    print(
        f"{'suite':<18}{'payload':>9}{'file bytes':>12}{'hash s':>9}{'MB/s':>7}"
        f"{'ecqv ms':>9}{'ecdsa ms':>10}{'verify s':>10}{'median':>8}"
    )
    for suite_no in (1, 2):
        keys = make_keys(suite_no)
        name = SUITES[suite_no].curve_name
        for label, size in SIZES.items():
            r = bench_one(crypto, keys, size, args.repeat)
            print(
                f"{suite_no} {name:<16}{label:>9}{int(r['bytes']):>12}{r['hash_s']:>9.3f}"
                f"{r['bytes'] / r['hash_s'] / 1e6:>7.2f}{r['ecqv_s'] * 1e3:>9.1f}"
                f"{r['ecdsa_s'] * 1e3:>10.1f}{r['total_s']:>10.3f}{r['total_median']:>8.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
