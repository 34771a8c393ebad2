"""The README's EZSP command table is current, and herdsman's commands are all answered."""

from __future__ import annotations

import json

import ncp_command_table as t
from required_tools import missing


def test_readme_table_is_current():
    text = t.README.read_text()
    assert t.START in text and t.END in text
    assert t.readme_with_table(text) == text, "run tests/ncp_command_table.py --write"


def test_every_command_on_herdsmans_path_is_handled():
    raised = t.raised_callbacks()
    assert {n for n in t.HERDSMAN_PATH if not t.handled(n, raised)} == set()
    # a command, not a callback: the NCP must answer each one herdsman can send or say
    # which it cannot; the table lists those it cannot (touchlink, key rotation)
    assert t.HERDSMAN_PATH - {n for n in t.HERDSMAN_PATH if t.is_callback(n)} <= t.HERDSMAN_SENDS


def test_a_command_the_emulator_lacks_is_shown_as_such():
    assert "| sendRawMessageExtended | 0x0051 | — | sends |" in t.table()
    assert "| getExtendedValue | 0x0003 | handled | **start-up → reads** |" in t.table()


def test_herdsman_sends_what_the_table_says():
    """Read from the installed herdsman (fails under CI without it, skips elsewhere)."""
    package = t.HERDSMAN_DIST.parent / "package.json"
    if not package.exists():
        missing("zigbee-herdsman (npm ci --prefix interop/herdsman)")
    pinned = json.loads((t.ROOT / "interop" / "herdsman" / "package.json").read_text())
    assert json.loads(package.read_text())["version"] == pinned["dependencies"]["zigbee-herdsman"]
    assert t.herdsman_sends() == t.HERDSMAN_SENDS

