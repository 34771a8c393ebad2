"""The SE endpoint campaign (see ``tests/se_campaign.py`` for the generator and the oracle).

The default run keeps a short deterministic sample, and tshark — an implementation of ZCL
and SE that shares no code with ours — reads a few hundred of its replies from a capture:
none may be malformed. The full campaign, a million frames::

    nice -n 15 .venv/bin/python -m pytest -m slow -s -p no:cacheprovider \\
        tests/test_campaign_endpoint.py

prints its seed, count and figures; ``SEP_CAMPAIGN_SEED=N SEP_CAMPAIGN_COUNT=M`` repeat
or stretch it. The coverage-guided counterpart (atheris) is ``tests/atheris_endpoint.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import se_campaign
from fuzzgen import Campaign, CatchAllObserver
from required_tools import require_tool

from radios.frames import AirFrame, ApsKind
from radios.pcap import PcapWriter

TSHARK = shutil.which("tshark")


def campaign(name: str, seed: int, count: int, *, sample: int = 0
             ) -> tuple[Campaign, se_campaign.SeCampaign, list[str]]:
    camp = Campaign.make(name, seed, count)
    with CatchAllObserver() as observer:
        engine, found = se_campaign.run(camp, observer, sample_replies=sample)
    camp.report()
    return camp, engine, found


def capture(path: Path, engine: se_campaign.SeCampaign) -> int:
    """The sampled replies as the meter put them on the air."""
    with PcapWriter(path) as pcap:
        for i, (frame, data) in enumerate(engine.replies_seen):
            pcap.write(AirFrame(kind=ApsKind.DATA, pan_id=0x1A62, src_nwk=0x0001,
                                dst_nwk=frame.src, src_ieee=0x000D6F000000F201,
                                profile_id=0x0109, cluster_id=frame.cluster, src_ep=1,
                                dst_ep=1, aps_counter=i & 0xFF, payload=data,
                                nwk_seq=i & 0xFF, mac_seq=i & 0xFF))
        return pcap.frames


def test_se_endpoint_sample(tmp_path):
    camp, engine, found = campaign("se-endpoint-sample", 20261, 4000, sample=600)
    assert not found, "\n".join(found[:5])
    assert camp.internal_exceptions == 0 and camp.unparsable == 0
    # the sample reaches the paths it is meant to: refusals and accepted changes alike
    for outcome in ("status MALFORMED_COMMAND", "status UNSUP_CLUSTER_COMMAND",
                    "status UNSUPPORTED_CLUSTER", "status NOT_AUTHORIZED", "changed supply",
                    "changed messages", "changed attrs"):
        assert camp.outcomes[outcome] > 0, outcome
    require_tool("tshark")  # it judges the replies
    pcap = tmp_path / "replies.pcap"
    assert capture(pcap, engine) >= 300
    bad = subprocess.run([TSHARK, "-r", str(pcap), "-Y",
                          "_ws.malformed || _ws.expert.severity == error"],
                         capture_output=True, text=True, check=True).stdout
    assert bad == "", bad
    zcl = subprocess.run([TSHARK, "-r", str(pcap), "-Y", "zbee_zcl", "-T", "fields", "-e",
                          "zbee_zcl.cmd.tsn"], capture_output=True, text=True, check=True)
    assert len(zcl.stdout.split()) == len(engine.replies_seen)  # every one read as ZCL


@pytest.mark.slow
@pytest.mark.timeout(21600)  # a campaign, not a hang
def test_se_endpoint_million_frames():
    camp, _engine, found = campaign("se-endpoint", 1, 1_000_000)
    assert not found, "\n".join(found[:5])
    assert camp.frames == camp.count
    assert camp.internal_exceptions == 0 and camp.unparsable == 0 and camp.unentitled == 0
