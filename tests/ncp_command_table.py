"""The README's table of EZSP v13 commands: which the NCP emulator handles, which herdsman sends.

Rows are bellows' ``bellows.ezsp.v13.commands.COMMANDS`` (the table the emulator is built on);
"handled" means :class:`radios.ncp.ezsp.EzspNcp` has a ``cmd_<name>`` handler, and for a
callback (the NCP's frames to the host) that some module of radios/ncp raises it.

The herdsman column: zigbee-herdsman's ember adapter (the version pinned in
interop/herdsman/package.json). ``HERDSMAN_PATH`` is what it sent in tests/test_herdsman.py
(start-up, forming, permit joining, a join, the interview, reads, a restart that resumes
with a stack config setting CCA_MODE),
which that test checks; ``HERDSMAN_SENDS`` is every command its adapter
(``dist/adapter/ember/adapter/emberAdapter.js`` through ``ezsp/ezsp.js``) can send, which
:func:`herdsman_sends` reads from the installed package (tests/test_ncp_command_table.py
compares them when it is installed).

    .venv/bin/python tests/ncp_command_table.py           # print the table
    .venv/bin/python tests/ncp_command_table.py --write   # put it in README.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from radios.ncp.cmd_common import COMMANDS  # noqa: E402
from radios.ncp.ezsp import EzspNcp  # noqa: E402

README = ROOT / "README.md"
START = "<!-- ncp-commands:start (tests/ncp_command_table.py --write) -->"
END = "<!-- ncp-commands:end -->"
HERDSMAN_DIST = ROOT / "interop" / "herdsman" / "node_modules" / "zigbee-herdsman" / "dist"

# what herdsman sent from start-up to reading a joined meter, and after a restart
HERDSMAN_PATH = frozenset({
    "version", "setConfigurationValue", "setPolicy", "setValue", "setManufacturerCode",
    "getExtendedValue", "addEndpoint", "setMulticastTableEntry", "networkInit",
    "setInitialSecurityState", "clearKeyTable", "formNetwork", "getNetworkParameters",
    "exportKey", "setConcentrator", "setSourceRouteDiscoveryMode", "getEui64", "getValue",
    "getNetworkKeyInfo", "importTransientKey", "clearTransientLinkKeys", "permitJoining",
    "sendUnicast", "sendBroadcast", "setRadioIeee802154CcaMode",
    # callbacks herdsman took on the way
    "stackStatusHandler", "trustCenterJoinHandler", "incomingMessageHandler",
    "messageSentHandler",
})
# every command herdsman's ember adapter can send (read from the package by herdsman_sends)
HERDSMAN_SENDS = frozenset({
    "addEndpoint", "broadcastNetworkKeySwitch", "broadcastNextNetworkKey", "clearKeyTable",
    "clearTransientLinkKeys", "eraseKeyTableEntry", "exportKey", "exportLinkKeyByIndex",
    "formNetwork", "getConfigurationValue", "getEui64", "getExtendedValue", "getNetworkKeyInfo",
    "getNetworkParameters", "getValue", "importLinkKey", "importTransientKey", "leaveNetwork",
    "networkInit", "networkState", "permitJoining", "readAndClearCounters", "sendBroadcast",
    "sendRawMessageExtended", "sendUnicast", "setConcentrator", "setConfigurationValue",
    "setInitialSecurityState", "setLogicalAndRadioChannel", "setManufacturerCode",
    "setMulticastTableEntry", "setPolicy", "setRadioIeee802154CcaMode", "setRadioPower",
    "setSourceRouteDiscoveryMode", "setValue", "version",
})


def is_callback(name: str) -> bool:
    return name.endswith("Handler")


def raised_callbacks() -> set[str]:
    """Callbacks some module of radios/ncp queues (``callback("name", ...)``)."""
    text = "\n".join(p.read_text() for p in (ROOT / "radios" / "ncp").glob("*.py"))
    return set(re.findall(r"callback\(\s*\"(\w+Handler)\"", text))


def handled(name: str, raised: set[str]) -> bool:
    if is_callback(name):
        return name in raised
    return name == "version" or hasattr(EzspNcp, f"cmd_{name}")


def herdsman_sends(dist: Path = HERDSMAN_DIST) -> set[str]:
    """The bellows names of the frames herdsman's adapter can send (comment lines left out)."""
    ember = dist / "adapter" / "ember"
    code = lambda path: "\n".join(  # noqa: E731
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("//"))
    adapter = code(ember / "adapter" / "emberAdapter.js")
    ezsp = code(ember / "ezsp" / "ezsp.js")
    enums = (ember / "ezsp" / "enums.js").read_text()
    frame_ids = {name: int(value, 0) for name, value in re.findall(
        r'EzspFrameID\[EzspFrameID\["(\w+)"\] = (0x[0-9A-Fa-f]+|\d+)\]', enums)}
    starts = [(m.group(1), m.start()) for m in re.finditer(r"\n    (?:async )?(ezsp\w+)\(", ezsp)]
    bodies: dict[str, str] = {}
    for i, (method, at) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else len(ezsp)
        bodies.setdefault(method, ezsp[at:end])

    def frames(method: str, seen: set[str]) -> set[str]:
        if method in seen or method not in bodies:
            return set()
        seen.add(method)
        out = set(re.findall(r"EzspFrameID\.(\w+)", bodies[method]))
        for inner in re.findall(r"this\.(ezsp\w+)\(", bodies[method]):
            out |= frames(inner, seen)
        return out

    sent: set[str] = set()
    for method in set(re.findall(r"this\.ezsp\.(ezsp\w+)\(", adapter)):
        sent |= frames(method, set())
    by_id = {cmd_id: name for name, (cmd_id, _req, _rsp) in COMMANDS.items()}
    return {by_id[frame_ids[f]] for f in sent if frame_ids[f] in by_id}


def table() -> str:
    raised = raised_callbacks()
    rows = ["| EZSP v13 command (bellows) | id | emulator | herdsman |",
            "|---|---|---|---|"]
    for name, (cmd_id, _req, _rsp) in sorted(COMMANDS.items(), key=lambda kv: kv[1][0]):
        if is_callback(name):
            emu = "raised" if handled(name, raised) else "never raised"
        else:
            emu = "handled" if handled(name, raised) else "—"
        if name in HERDSMAN_PATH:
            herd = "**start-up → reads**"
        elif name in HERDSMAN_SENDS:
            herd = "sends"
        else:
            herd = ""
        rows.append(f"| {name} | 0x{cmd_id:04X} | {emu} | {herd} |")
    commands = [n for n in COMMANDS if not is_callback(n)]
    done = sum(handled(n, raised) for n in commands)
    callbacks = [n for n in COMMANDS if is_callback(n)]
    summary = (f"{done} of {len(commands)} commands handled, {sum(handled(n, raised) for n in callbacks)}"
               f" of {len(callbacks)} callbacks raised; herdsman's path: "
               f"{sum(handled(n, raised) for n in HERDSMAN_PATH)} of {len(HERDSMAN_PATH)}.")
    return "\n".join([START, "", summary, "", *rows, "", END])


def readme_with_table(text: str) -> str:
    begin, end = text.index(START), text.index(END) + len(END)
    return text[:begin] + table() + text[end:]


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        README.write_text(readme_with_table(README.read_text()))
    else:
        print(table())
