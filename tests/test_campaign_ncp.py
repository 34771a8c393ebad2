"""The NCP emulator campaign (see ``tests/ncp_campaign.py``): ASH frames carrying EZSP
frames, as a host writes them, judged by bellows' own ASH and EZSP parsers.

Default run: a short sample of the sans-IO layers and of the emulator over TCP. The
campaigns (100,000 writes each)::

    nice -n 15 .venv/bin/python -m pytest -m slow -s -p no:cacheprovider tests/test_campaign_ncp.py

The coverage-guided counterpart for the ASH decoder (atheris) is ``tests/atheris_ash.py``.
"""

from __future__ import annotations

import ncp_campaign
import pytest
from fuzzgen import Campaign, CatchAllObserver

# What the emulator logs at WARNING for every invalid command is its documented answer.
ALLOW = ()


def run_sans_io(name: str, seed: int, count: int) -> tuple[Campaign, list[str],
                                                          ncp_campaign.AshEzspCampaign]:
    camp = Campaign.make(name, seed, count)
    engine = ncp_campaign.AshEzspCampaign(camp.rng())
    found: list[str] = []
    with CatchAllObserver(allow=ALLOW) as observer:
        for i in range(camp.count):
            try:
                meta, problems = engine.step()
            except Exception as exc:  # noqa: BLE001 - counted as an internal exception
                meta, problems = {}, [f"raised {exc!r}"]
                camp.internal_exceptions += 1
            caught = observer.take()
            camp.internal_exceptions += len(caught)
            problems += [f"catch-all: {CatchAllObserver.describe(r)}" for r in caught]
            camp.frames += 1
            camp.outcomes[engine.last_outcome] += 1
            if problems:
                camp.unparsable += any("unreadable" in p or "unparsable" in p or "trailing" in p
                                       for p in problems)
                camp.unentitled += any("changed" in p for p in problems)
                found.append(f"#{i} {meta}: {problems}")
                if len(found) > 10:
                    break
    camp.replies = engine.ash.stats.frames_out
    camp.outcomes["EZSP commands"] = engine.ncp.counters.commands
    camp.outcomes["EZSP invalidCommand"] = engine.ncp.counters.invalid
    camp.report()
    return camp, found, engine


async def run_emulator(name: str, seed: int, count: int) -> tuple[Campaign, list[str]]:
    camp = Campaign.make(name, seed, count)
    engine = ncp_campaign.EmulatorCampaign(camp.rng())
    found: list[str] = []
    with CatchAllObserver(allow=ALLOW) as observer:
        await engine.start()
        try:
            for i in range(camp.count):
                meta, problems = await engine.step()
                caught = observer.take()
                camp.internal_exceptions += len(caught)
                problems += [f"catch-all: {CatchAllObserver.describe(r)}" for r in caught]
                camp.frames += 1
                camp.outcomes[engine.last_outcome] += 1
                if problems:
                    camp.unparsable += any("unreadable" in p or "unparsable" in p
                                           for p in problems)
                    found.append(f"#{i} {meta}: {problems}")
                    if len(found) > 10:
                        break
            camp.replies = engine.emu.ash.stats.frames_out
            camp.outcomes["EZSP commands"] = engine.emu.ncp.counters.commands
            camp.outcomes["emulator errors"] = engine.emu.errors
        finally:
            await engine.stop()
    camp.report()
    return camp, found


def test_ash_ezsp_sample():
    camp, found, engine = run_sans_io("ash-ezsp-sample", 20263, 6000)
    assert not found, "\n".join(found)
    assert engine.ncp.counters.commands > 3000 and engine.ncp.counters.invalid > 300
    assert engine.ash.stats.bad_frames > 20 and engine.ash.stats.naks_sent > 20


async def test_emulator_sample():
    camp, found = await run_emulator("ncp-emulator-sample", 20264, 800)
    assert not found, "\n".join(found)
    assert camp.outcomes["EZSP commands"] > 400 and camp.outcomes["emulator errors"] == 0


@pytest.mark.slow
@pytest.mark.timeout(10800)  # a campaign, not a hang
def test_ash_ezsp_campaign():
    camp, found, _engine = run_sans_io("ash-ezsp", 3, 100_000)
    assert not found, "\n".join(found)
    assert camp.frames == camp.count and camp.internal_exceptions == 0 and camp.unparsable == 0


@pytest.mark.slow
@pytest.mark.timeout(10800)  # a campaign, not a hang
async def test_emulator_campaign():
    camp, found = await run_emulator("ncp-emulator", 4, 100_000)
    assert not found, "\n".join(found)
    assert camp.frames == camp.count and camp.internal_exceptions == 0 and camp.unparsable == 0
