"""Shared fixtures: a virtual air with a hub, a meter and an IHD on it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from required_tools import require_tool

from hubsim.hub import CommsHub
from hubsim.ihd import InHomeDisplay
from radios.air import VirtualAir
from sep.app import MeterApp, MeterSettings
from sep.clock import ManualClock

METER_IEEE = "00:0d:6f:00:00:00:aa:01"
SEED = 7


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs_tool(*names): the test runs these executables (missing: fails under CI, "
        "skips elsewhere; tests/required_tools.py)")


def pytest_runtest_setup(item):
    for mark in item.iter_markers(name="needs_tool"):
        for name in mark.args:
            require_tool(name)


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory, monkeypatch):
    """`sep meter` without --data keeps its data in $XDG_STATE_HOME/sep: each test (and the
    processes it starts) gets its own, and no secret of the developer's shell leaks in."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    for name in list(os.environ):
        if name.startswith("SEP_") or name in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def default_demo(tmp_path_factory) -> tuple[Path, str]:
    """One default `hubsim demo` (60 s, as a user runs it, capture written): its capture and
    what it printed, shared by every test that judges that run (a run costs a minute)."""
    require_tool("tshark")
    where = tmp_path_factory.mktemp("default-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEP_")}
    env["XDG_STATE_HOME"] = str(where / "state")
    pcap = where / "air.pcap"
    proc = subprocess.run([str(Path(sys.executable).parent / "hubsim"), "demo", "--duration",
                           "60", "--no-live", "--pcap", str(pcap)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    return pcap, proc.stdout


@pytest.fixture(autouse=True)
def _quiet_zigpy():
    logging.getLogger("zigpy").setLevel(logging.ERROR)
    yield


@pytest.fixture
async def han():
    """(air, clock, hub, meter, ihd) with the IHD connected to the meter."""
    air = VirtualAir()
    clock = ManualClock()
    hub = CommsHub(air=air)
    await hub.start()
    meter = MeterApp(MeterSettings(ieee=METER_IEEE, seed=SEED, tick_seconds=0.02),
                     clock=clock, air=air)
    await meter.start()
    ihd = InHomeDisplay(air=air, report_min=1, report_max=600)
    await ihd.start()
    try:
        yield air, clock, hub, meter, ihd
    finally:
        await ihd.stop()
        await meter.stop()
        await hub.stop()
