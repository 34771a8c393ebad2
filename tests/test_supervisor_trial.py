"""The supervisor's trial deadline binds only a process started on trial.

A real meter is always "up a while" when an update comes. Two real upgrades, each under
``sep supervise --trial-timeout T`` with real processes: one where the meter has been
serving for longer than T before the image is even offered, and one where the OTA server
schedules the upgrade for later than T. Both must succeed on the first try: one download,
one activation, the new version confirmed, no revert — the supervisor's output, the
update log and ``sep version`` say so.
"""

from __future__ import annotations

import time

import pytest
from supervised import OLD, Han, SupervisedMeter, build_app_image, make_keys
from waiting import until

from hubsim.ota_server import OtaServerCore

NEW = 0x00010001
TRIAL_TIMEOUT = 8.0  # seconds; long enough for a trial boot on a loaded machine


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("keys") / "k")


@pytest.fixture(scope="module")
def image(keys, tmp_path_factory):
    return build_app_image(keys, tmp_path_factory.mktemp("img") / "app.ota", NEW, pad=16_000)


async def upgraded_on_the_first_try(meter: SupervisedMeter) -> None:
    await until(lambda: meter.runs(NEW) and "confirmed" in meter.steps(), timeout=240,
                step=0.5)
    await meter.stop()
    steps = meter.steps()
    assert steps.count("activated") == 1 and steps.count("confirmed") == 1, steps
    assert steps.count("download started") == 1 and "resumed" not in steps, steps
    assert not any("reverted" in line or "did not confirm" in line for line in meter.lines), \
        "\n".join(meter.lines)
    v = meter.version()
    assert v["file_version"] == NEW and v["active_slot"] in ("A", "B") and not v["trial"]


async def test_a_meter_up_longer_than_the_trial_timeout_upgrades_first_time(tmp_path, keys,
                                                                           image):
    core = OtaServerCore([], upgrade_delay=0)  # nothing to offer yet
    han = await Han(core).start()
    meter = SupervisedMeter(tmp_path / "data", han, keys, trial_timeout=TRIAL_TIMEOUT)
    try:
        await meter.start()
        await until(lambda: meter.serving_since is not None, timeout=120, step=0.2)
        # the meter has now run longer than the trial timeout, on the factory image
        await until(lambda: time.monotonic() - meter.serving_since > TRIAL_TIMEOUT + 2,
                    timeout=60, step=0.2)
        assert meter.version()["file_version"] == OLD and meter.steps() == []
        core.add(image)  # the server has an image for it now
        await upgraded_on_the_first_try(meter)
        # the upgrade came well after the trial timeout of the process that activated it
        started = [e["time"] for e in meter.update_log() if e.get("step") == "activated"]
        assert started
    finally:
        await meter.stop()
        await han.stop()


async def test_an_upgrade_scheduled_later_than_the_trial_timeout_succeeds_first_time(
        tmp_path, keys, image):
    # Upgrade End Response: "upgrade in TRIAL_TIMEOUT + 4 s" (the server's upgrade time)
    core = OtaServerCore([image], upgrade_delay=int(TRIAL_TIMEOUT) + 4)
    han = await Han(core).start()
    meter = SupervisedMeter(tmp_path / "data", han, keys, trial_timeout=TRIAL_TIMEOUT)
    try:
        await meter.start()
        await upgraded_on_the_first_try(meter)
        log = meter.update_log()
        scheduled = [e for e in log if e.get("step") == "upgrade scheduled"]
        assert scheduled and scheduled[0]["in_seconds"] > TRIAL_TIMEOUT
    finally:
        await meter.stop()
        await han.stop()
