"""SIGKILL campaign: a power cut of the whole process tree at random points of real
upgrades, and the meter afterwards.

One data directory lives through a series of upgrades (version N+1 each time), as a meter
does. For each kill point the supervised meter (``sep supervise`` and the meter it runs, a
process group of their own) is started against a hub whose OTA server offers the next
image; once the upgrade reaches the phase this kill point aims at — the meter up, the
download under way, downloaded, verified, activated, booting on trial, confirmed — and a
random moment more, the whole group is killed with SIGKILL. Then, as an operator would:

- ``sep version`` answers, with the old version or the new one and nothing else;
- ``sep check`` finds every stored record intact (exit 0);
- restarted, the meter answers a Read Attributes sent over the air (Basic ZCLVersion and
  the Metering summation, parsed by zigpy);
- and the upgrade it was cut in completes: the new version runs, confirmed, and
  ``sep check`` is still clean — unless the cut fell in the new image's trial boot (it
  booted on trial and had not confirmed): a cut there cannot be told from a crash, so the
  trial is reverted, the meter runs the old version and refuses the new one when it is
  offered again (``failed`` in boot.json: no boot loop), and the next kill point offers
  the next version.

A bad outcome is any of these not holding. The default run keeps one kill point (the most
delicate: in the trial boot of the new image). The campaign::

    nice -n 15 .venv/bin/python -m pytest -m slow -s -p no:cacheprovider tests/test_ota_killloop.py

(``SEP_KILL_POINTS`` and ``SEP_CAMPAIGN_SEED`` change the number of kill points and the
seed.)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from supervised import OLD, Han, SupervisedMeter, build_app_image, make_keys
from waiting import until

from hubsim.ota_server import OtaServerCore

PHASES = ("up", "downloading", "downloaded", "verified", "activated", "trial", "confirmed",
          "anytime")
PAD = 48_000  # bytes of payload: a download of a few seconds on the virtual air
IEEE = "00:0d:6f:00:00:00:4b:01"


def durable_offset(data: Path) -> int:
    try:
        return int(json.loads((data / "ota" / "download.json").read_text())["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def reached(meter: SupervisedMeter, phase: str, earlier: int, started: float,
            anytime: float) -> bool:
    steps = [e.get("step") for e in meter.update_log()[earlier:]]
    if phase == "up":
        return meter.serving_since is not None
    if phase == "downloading":
        return "download started" in steps and durable_offset(meter.data) > 0
    if phase in ("downloaded", "verified", "activated", "confirmed"):
        return phase in steps
    if phase == "trial":
        return meter.boot().get("trial", False) and any("on trial" in x for x in meter.lines)
    return time.monotonic() - started > anytime


async def served_over_the_air(han: Han, timeout: float = 90) -> bool:
    """A Read Attributes of the meter's Basic and Metering clusters, over the air."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        basic = await han.read_attributes(IEEE, 0x0000, [0x0000], timeout=2)
        metering = await han.read_attributes(IEEE, 0x0702, [0x0000], timeout=2)
        if basic and metering and basic[0x0000].status == 0 and basic[0x0000].value.value == 8 \
                and metering[0x0000].status == 0:
            return True
        await asyncio.sleep(0.5)
    return False


async def kill_campaign(tmp: Path, points: int, seed: int, phases: tuple[str, ...] = PHASES
                        ) -> tuple[list[str], Counter]:
    print(f"\nSIGKILL campaign: seed {seed}, {points} kill points", flush=True)
    rng = random.Random(seed)
    keys = make_keys(tmp / "keys")
    core = OtaServerCore([], upgrade_delay=0)
    han = await Han(core).start()
    data = tmp / "data"
    current = OLD
    bad: list[str] = []
    hits: Counter = Counter()
    try:
        for k in range(points):
            version = OLD + 1 + k
            image = build_app_image(keys, tmp / f"app-{k}.ota", version, pad=PAD)
            core.add(image)  # the server offers the next version
            phase = phases[k % len(phases)]
            extra = rng.uniform(0.0, 0.6)
            earlier = len(SupervisedMeter(data, han, keys, trial_timeout=60).update_log())
            meter = SupervisedMeter(data, han, keys, trial_timeout=60, ieee=IEEE)
            started = time.monotonic()
            await meter.start()
            anytime = rng.uniform(0, 25)
            try:
                await until(lambda m=meter, p=phase, e=earlier, s=started, a=anytime:
                            reached(m, p, e, s, a), timeout=240, step=0.02)
            except AssertionError:
                bad.append(f"#{k} {phase}: the upgrade never reached the phase")
                await meter.stop()
                continue
            await asyncio.sleep(extra)  # a random moment after it
            steps = [e.get("step") for e in meter.update_log()[earlier:]]
            where = f"{phase}+{extra:.2f}s ({steps[-1] if steps else 'no step yet'})"
            meter.kill()
            await meter.wait()
            hits[phase] += 1
            cut = meter.boot()
            in_trial = bool(cut.get("trial")) and cut.get("trial_boots", 0) >= 1
            problems = []
            try:
                v = meter.version()
                if v["file_version"] not in (current, version):
                    problems.append(f"sep version says 0x{v['file_version']:08X}")
            except Exception as exc:  # noqa: BLE001 - any failure is a bad outcome
                problems.append(f"sep version failed: {exc}")
            check = meter.check()
            if check.returncode != 0:
                problems.append(f"sep check exit {check.returncode}: {check.stdout[-300:]}")
            logged = len(meter.update_log())
            again = SupervisedMeter(data, han, keys, trial_timeout=60, ieee=IEEE)
            await again.start()
            expect = current if in_trial else version
            try:
                if not await served_over_the_air(han):
                    problems.append("the restarted meter does not answer a Read Attributes")
                try:
                    if in_trial:  # reverted, and the version offered again is refused
                        await until(lambda m=again, v=version, n=logged, c=current: m.runs(c)
                                    and v in m.boot().get("failed", []) and "refused"
                                    in [e.get("step") for e in m.update_log()[n:]],
                                    timeout=300, step=0.5)
                    else:
                        await until(lambda m=again, v=version: m.runs(v), timeout=300, step=0.5)
                except AssertionError:
                    problems.append(f"{'the revert' if in_trial else 'the retried upgrade'} "
                                    f"to 0x{expect:08X} did not complete: {again.boot()}")
            finally:
                await again.stop()
            final = again.version()
            if final["file_version"] != expect or final["trial"]:
                problems.append(f"after the restart: {final}")
            if again.check().returncode != 0:
                problems.append("sep check failed after the restart")
            current = expect
            where += " in the trial boot: reverted" if in_trial else ""
            verdict = "ok" if not problems else "BAD"
            print(f"kill #{k} at {where}: {verdict} {problems or ''}", flush=True)
            if problems:
                bad.append(f"#{k} at {where}: {problems}")
    finally:
        await han.stop()
    print(f"SIGKILL campaign: {points} kill points {dict(hits)}, {len(bad)} bad outcomes",
          flush=True)
    return bad, hits


async def test_sigkill_in_the_trial_boot(tmp_path):
    bad, hits = await kill_campaign(tmp_path, 1, 20271, phases=("trial",))
    assert not bad, "\n".join(bad)
    assert hits == Counter({"trial": 1})


@pytest.mark.slow
@pytest.mark.timeout(21600)  # a campaign, not a hang
async def test_sigkill_campaign(tmp_path):
    points = int(os.environ.get("SEP_KILL_POINTS", 48))
    seed = int(os.environ.get("SEP_CAMPAIGN_SEED", 9))
    bad, hits = await kill_campaign(tmp_path, points, seed)
    assert not bad, "\n".join(bad)
    assert sum(hits.values()) == points >= 40 and set(hits) == set(PHASES)
