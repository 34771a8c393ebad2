"""CBKE on the NCP emulator, through unmodified bellows: generateCbkeKeys + calculateSmacs.

One round trip is what a host asks of its stick for its half of a Key Establishment:
``generateCbkeKeys[283k1]`` -> ``OPERATION_IN_PROGRESS`` ... ``generateCbkeKeysHandler``,
then ``calculateSmacs[283k1]`` with the partner's certificate and ephemeral key ->
``OPERATION_IN_PROGRESS`` ... ``calculateSmacsHandler`` (then the temporary data is
cleared, untimed). The stick does one scalar multiplication for the key pair, one to
reconstruct the partner's key and two for ECMQV, in a worker thread. Meanwhile the host
pings the stick with ``echo`` every 5 ms: the echo latency says whether the emulator keeps
serving during the maths (the threads share the GIL on 2 cores, so it is not free).

    .venv/bin/python bench/bench_ncp_cbke.py [--runs N] [--suite 1|2]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

import bellows.types as bt
import zigpy.config
from bellows.ezsp import EZSP

from radios.air import VirtualAir
from radios.ncp import start_emulator
from radios.ncp.cmd_cbke import CbkeData
from sep.security import cbke
from sep.security.cbke_engine import SepCbkeEngine
from sep.security.certs import SUITE_CURVES
from sep.security.keyfiles import generate_ca, issue_credentials

STICK, PARTNER = 0x000D6F00000BE001, 0x000D6F00000BE002
NAMES = {1: ("generateCbkeKeys", "generateCbkeKeysHandler", "calculateSmacs",
             "calculateSmacsHandler", "clearTemporaryDataMaybeStoreLinkKey",
             bt.EmberCertificateData, bt.EmberPublicKeyData),
         2: ("generateCbkeKeys283k1", "generateCbkeKeysHandler283k1", "calculateSmacs283k1",
             "calculateSmacsHandler283k1", "clearTemporaryDataMaybeStoreLinkKey283k1",
             bt.EmberCertificate283k1Data, bt.EmberPublicKey283k1Data)}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def bench(suite: int, runs: int) -> None:
    ca = generate_ca(suite, b"BENCH-CA")
    own, partner = issue_credentials(ca, STICK), issue_credentials(ca, PARTNER)
    curve = SUITE_CURVES[suite]
    partner_eph = cbke.ephemeral_public(suite, cbke.random_ephemeral(curve))
    data = CbkeData(own.ca_public_key, own.certificate,
                    own.private_key.to_bytes(curve.scalar_len, "big"))
    eui = str(bt.EUI64(STICK.to_bytes(8, "little")))
    emu = await start_emulator(VirtualAir(), ieee=eui, cbke_engine=SepCbkeEngine(),
                               cbke_data={suite: data})
    ezsp = EZSP(zigpy.config.SCHEMA_DEVICE({zigpy.config.CONF_DEVICE_PATH: emu.url}))
    await ezsp.connect(use_thread=False)
    gen, gen_done, smacs, smacs_done, clear, cert_type, key_type = NAMES[suite]
    waiting: dict[str, asyncio.Future] = {}

    def on_callback(name: str, args: list) -> None:
        fut = waiting.pop(name, None)
        if fut is not None and not fut.done():
            fut.set_result(args)

    ezsp.add_callback(on_callback)

    async def operation(command: str, handler: str, **kwargs) -> list:
        waiting[handler] = asyncio.get_running_loop().create_future()
        (status,) = await getattr(ezsp, command)(**kwargs)
        assert status == bt.EmberStatus.OPERATION_IN_PROGRESS, status
        result = await asyncio.wait_for(waiting[handler], 30)
        assert result[0] == bt.EmberStatus.SUCCESS, result
        return result

    echoes: list[float] = []
    running = True

    async def pinger() -> None:
        while running:
            t = time.perf_counter()
            await ezsp.echo(data=b"ping")
            echoes.append(time.perf_counter() - t)
            await asyncio.sleep(0.005)

    try:
        idle: list[float] = []
        for _ in range(20):
            t = time.perf_counter()
            await ezsp.echo(data=b"ping")
            idle.append(time.perf_counter() - t)
        ping = asyncio.create_task(pinger())
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            await operation(gen, gen_done)
            await operation(smacs, smacs_done, amInitiator=True,
                            partnerCertificate=cert_type(partner.certificate),
                            partnerEphemeralPublicKey=key_type(partner_eph))
            times.append(time.perf_counter() - t)
            await getattr(ezsp, clear)(storeLinkKey=False)
        running = False
        await ping
    finally:
        await ezsp.disconnect()
        await emu.stop()
    print(f"suite {suite} ({curve.name}), {runs} runs: {gen} + {smacs} round trip "
          f"p50 {statistics.median(times) * 1000:7.1f} ms  p95 {pct(times, 95) * 1000:7.1f} ms")
    print(f"   echo latency idle p50 {statistics.median(idle) * 1000:5.1f} ms; during the "
          f"maths ({len(echoes)} echoes) p50 {statistics.median(echoes) * 1000:5.1f} ms  "
          f"p95 {pct(echoes, 95) * 1000:5.1f} ms  max {max(echoes) * 1000:5.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--suite", type=int, choices=(1, 2), action="append")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for suite in args.suite or [2, 1]:
        asyncio.run(bench(suite, args.runs))


if __name__ == "__main__":
    main()
