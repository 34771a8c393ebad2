"""`sep meter --config FILE`, `sep config example|check`, secrets, the default data folder,
JSON log lines: real `sep` processes (and the resolution rules in-process)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import aiomqtt
from broker import Broker
from shared_vectors import vectors_file

from sep.cli import build_parser
from sep.cli.common import new_file
from sep.cli.config import ConfigError, check, configurable, load, resolve

BIN = Path(sys.executable).parent
VECTORS = vectors_file()  # found by walking up (a worktree, mutants/)
CODE = "83FED3407A939723A5C639B26916D505C3B5"  # the Zigbee spec's install code (vector)


def sep(*args: str, env: dict | None = None, timeout: float = 60,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "sep"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def meter_specs():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["meter"].get_default("_config_specs")


# -- example and check ---------------------------------------------------------------------

def test_the_example_has_every_option_of_sep_meter_and_checks_clean(tmp_path):
    example = sep("config", "example")
    assert example.returncode == 0
    path = tmp_path / "sep.toml"
    path.write_text(example.stdout)
    good = sep("config", "check", str(path))
    assert good.returncode == 0 and "OK" in good.stdout, good.stderr
    # every long option `sep meter --help` lists has its key in the example
    usage = sep("meter", "--help").stdout.split("\n\n")[0]
    options = set(re.findall(r"\[--([a-z][a-z0-9-]+)", usage)) - {"help", "config"}
    assert len(options) > 30
    keys = set(re.findall(r"^#? ?([a-z][a-z0-9-]+) = ", example.stdout, re.M))
    keys |= {k[:-len("-file")] for k in keys if k.endswith("-file")}
    missing = options - keys - {"slot", "mqtt-url"}  # --slot is the supervisor's; an alias
    assert not missing, missing


def test_check_names_every_bad_key_and_value_and_exits_2(tmp_path):
    bad_code = CODE[:-1] + "4"  # one digit of the CRC changed
    path = tmp_path / "bad.toml"
    path.write_text(f'''
radio = "zigbee"
baudrate = "fast"
chanel = 15
install-code = ["00:0d:6f:00:0a:bc:de:f0={bad_code}"]
ephemeral = "yes"
[mqtt]
url = "mqtt://broker"
password-file = "missing-secret"
''')
    proc = sep("config", "check", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 6, proc.stderr
    text = proc.stderr
    assert "key 'radio'" in text and "virtual, ezsp" in text
    assert "key 'baudrate'" in text
    assert "unknown key 'chanel' (did you mean 'channel'?)" in text
    assert "key 'install-code'" in text and "CRC" in text
    assert "key 'ephemeral'" in text and "true or false" in text
    assert "key 'mqtt.password-file'" in text and "missing-secret" in text
    assert "Traceback" not in text
    # not TOML at all
    path.write_text("radio = \n")
    proc = sep("config", "check", str(path))
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
    assert sep("config", "check", str(tmp_path / "nope.toml")).returncode == 2


def test_the_meter_takes_its_options_from_the_file_and_the_command_line_wins(tmp_path):
    (tmp_path / "conf").mkdir()
    conf = tmp_path / "conf" / "sep.toml"
    conf.write_text('ieee = "00:0d:6f:00:00:00:c0:01"\nduration = 1\n'
                    'data = "meterdata"\n')  # relative to the file's folder
    proc = sep("meter", "--config", str(conf), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "meter 00:0d:6f:00:00:00:c0:01" in proc.stdout
    assert (tmp_path / "conf" / "meterdata" / "meter.db").exists()
    proc = sep("meter", "--config", str(conf), "--ieee", "00:0d:6f:00:00:00:c0:02",
               "--data", str(tmp_path / "other"))
    assert proc.returncode == 0, proc.stderr
    assert "meter 00:0d:6f:00:00:00:c0:02" in proc.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('speed = "fast"\n')
    proc = sep("meter", "--config", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"sep meter: {bad}: key 'speed': invalid float \"fast\""


def test_resolution_order_command_line_environment_file_credentials(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-credential")
    conf = tmp_path / "c.toml"
    conf.write_text('[mqtt]\npassword-file = "pw"\n')

    def password(argv: list[str], env: dict[str, str]) -> str:
        args = build_parser().parse_args(["meter", *argv])
        resolve(args, env)
        return args.mqtt_password

    only_creds = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert password([], only_creds) == "from-credential"
    assert password(["--config", str(conf)], only_creds) == "from-file"
    env = {**only_creds, "SEP_MQTT_PASSWORD": "from-env"}
    assert password(["--config", str(conf)], env) == "from-env"
    assert password(["--config", str(conf), "--mqtt-password", "cli"], env) == "cli"
    assert password([], {}) is None


def test_secrets_never_need_argv_a_password_protected_broker(tmp_path):
    broker = Broker(tmp_path, users={"meter": "s3cret pw"}).start()
    try:
        (tmp_path / "mqtt-password").write_text("s3cret pw\n")
        conf = tmp_path / "sep.toml"
        conf.write_text(f'ieee = "00:0d:6f:00:00:00:c0:03"\nephemeral = true\n'
                        f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker.port}"\n'
                        'username = "meter"\npassword-file = "mqtt-password"\n'
                        'interval = 0.2\n')
        env = {k: v for k, v in os.environ.items() if k != "SEP_MQTT_PASSWORD"}
        assert online_after(broker.port, ["--config", str(conf)], env)
        # from the environment instead
        conf.write_text(f'ieee = "00:0d:6f:00:00:00:c0:03"\nephemeral = true\n'
                        f'mqtt = "mqtt://meter@127.0.0.1:{broker.port}"\n')
        assert online_after(broker.port, ["--config", str(conf)],
                            {**env, "SEP_MQTT_PASSWORD": "s3cret pw"})
        # and a wrong one is refused by the broker: the check can fail
        assert not online_after(broker.port, ["--config", str(conf)],
                                {**env, "SEP_MQTT_PASSWORD": "wrong"})
    finally:
        broker.stop()


def online_after(port: int, argv: list[str], env: dict[str, str]) -> bool:
    """Did the meter announce itself online on the broker within its 4 s run?"""

    async def run() -> bool:
        seen = asyncio.Event()
        async with aiomqtt.Client("127.0.0.1", port, username="meter",
                                  password="s3cret pw") as sub:
            await sub.subscribe("sep/000d6f000000c003/availability", qos=1)
            proc = await asyncio.create_subprocess_exec(
                str(BIN / "sep"), "meter", *argv, "--duration", "4", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

            async def listen() -> None:
                async for msg in sub.messages:
                    if msg.payload == b"online":
                        seen.set()

            task = asyncio.create_task(listen())
            await asyncio.wait_for(proc.wait(), 60)
            await asyncio.sleep(0.2)
            task.cancel()
            # clear the retained value for the next run
            await sub.publish("sep/000d6f000000c003/availability", b"", retain=True, qos=1)
            return seen.is_set()

    return asyncio.run(run())


def test_an_option_added_later_gets_its_key_with_no_second_list(tmp_path):
    """What the lead's new `sep meter` options get: one add_argument line, and a key."""
    p = argparse.ArgumentParser(prog="sep meter")
    p.add_argument("--pcap", type=new_file, metavar="FILE")
    p.add_argument("--cert", action="append", type=Path, metavar="DIR", default=[])
    p.add_argument("--join", action="store_true")
    configurable(p)
    specs = p.get_default("_config_specs")
    values, problems = check({"pcap": "air.pcap", "cert": ["a", "b"], "join": True}, specs,
                             base=tmp_path)
    assert not problems
    assert values == {"pcap": tmp_path / "air.pcap", "cert": [tmp_path / "a", tmp_path / "b"],
                      "join": True}
    _, problems = check({"pcap": "no/such/dir/air.pcap", "join": 1}, specs, base=tmp_path)
    assert len(problems) == 2 and "does not exist" in problems[0]


def test_load_reports_unreadable_files_as_config_errors(tmp_path):
    try:
        load(tmp_path / "absent.toml", meter_specs())
    except ConfigError as exc:
        assert "absent.toml" in str(exc) and "cannot read" in str(exc)
    else:
        raise AssertionError("no error")


# -- the default data folder ------------------------------------------------------------------

def test_without_data_the_meter_keeps_its_identity_in_the_state_folder(tmp_path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    first = sep("meter", "--duration", "1", env=env)
    second = sep("meter", "--duration", "1", env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    ieee = re.search(r"meter ([0-9a-f:]{23})", first.stdout)[1]
    assert f"meter {ieee}" in second.stdout  # the same meter, not a new one each run
    saved = json.loads((tmp_path / "xdg" / "sep" / "identity.json").read_text())
    assert saved["ieee"] == ieee
    # under systemd, StateDirectory wins
    env["STATE_DIRECTORY"] = str(tmp_path / "var-lib-sep")
    third = sep("meter", "--duration", "1", env=env)
    assert third.returncode == 0
    assert (tmp_path / "var-lib-sep" / "identity.json").exists()
    assert f"meter {ieee}" not in third.stdout
    # --ephemeral: nothing kept, a new meter each time
    eph = sep("meter", "--duration", "1", "--ephemeral", env=env)
    assert eph.returncode == 0 and f"meter {ieee}" not in eph.stdout
    assert sep("events", env=env).returncode == 0  # events/check/version find it too


def test_a_data_folder_in_use_is_refused_with_one_line(tmp_path):
    data = tmp_path / "data"
    first = subprocess.Popen([str(BIN / "sep"), "meter", "--data", str(data), "--duration",
                              "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving" in first.stdout.readline()
        second = sep("meter", "--data", str(data), "--duration", "1")
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "--data" in lines[0] and f"pid {first.pid}" in lines[0]


# -- logging -----------------------------------------------------------------------------------

def test_v_after_the_sub_command_and_json_log_lines(tmp_path):
    proc = sep("meter", "-v", "--log-format", "json", "--duration", "1", "--ephemeral")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines, "-v after the sub-command gives info lines"
    docs = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert {d["level"] for d in docs} >= {"info"}
    assert all({"time", "level", "logger", "message"} <= set(d) for d in docs)
    assert any(d["message"].startswith("event STOP") for d in docs)
    before = sep("-v", "meter", "--duration", "1", "--ephemeral")  # still works the old way
    assert before.returncode == 0 and " INFO " in before.stderr
