"""The garbage collector in one-message runs (mailroute.adapters.collector)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mailroute.testing import build_message

# Records the collector's state when the policy is loaded and when the message is processed,
# and what is frozen when the interpreter exits; then runs the console script.
PROBE = """
import atexit, gc, json, sys
import mailroute.commands.common as common
from mailroute.pipeline import Pipeline
seen = {}
load = common.load_policy
def probed_load(path):
    seen["enabled while loading"] = gc.isenabled()
    return load(path)
common.load_policy = probed_load
process = Pipeline.process
def probed_process(self, *args, **kwargs):
    seen["enabled while processing"] = gc.isenabled()
    return process(self, *args, **kwargs)
Pipeline.process = probed_process
atexit.register(lambda: sys.stderr.write("SEEN " + json.dumps(
    {**seen, "frozen at exit": gc.get_freeze_count() > 0}) + "\\n"))
sys.argv = ["mailroute", *sys.argv[1:]]
from mailroute.cli import CALL
"""


def _run(tmp_path: Path, call: str, *args: str) -> tuple[bytes, dict[str, bool]]:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "headers"\nadd = { X-Probe = "1" }\n')
    done = subprocess.run(
        [sys.executable, "-c", PROBE.replace("CALL", call), *args, "--config", str(policy),
         *(["--", "max@partner.example"] if args[0] == "pipe" else [])],
        input=build_message(), capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout, json.loads(done.stderr.decode().rsplit("SEEN ", 1)[1])


@pytest.mark.parametrize("command", ["process", "pipe"])
def test_console_script_pauses_for_start_up_only(tmp_path: Path, command: str) -> None:
    reinjected = tmp_path / "reinjected.eml"
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f"#!/bin/sh\ncat > {reinjected}\n")
    sendmail.chmod(0o755)
    args = [command] if command == "process" else [
        command, "--sender", "anna.weber@example.net", "--reinject", f"sendmail:{sendmail}"]
    call = "entry_point; entry_point()"
    output, seen = _run(tmp_path, call, *args)
    assert b"X-Probe: 1" in (output if command == "process" else reinjected.read_bytes())
    assert seen == {"enabled while loading": False, "enabled while processing": True,
                    "frozen at exit": True}


def test_main_called_in_process_leaves_the_collector_alone(tmp_path: Path) -> None:
    call = "main; code = main(sys.argv[1:]); assert code == 0, code"
    output, seen = _run(tmp_path, call, "process")
    assert b"X-Probe: 1" in output
    assert seen == {"enabled while loading": True, "enabled while processing": True,
                    "frozen at exit": False}


def test_resume_without_pause_does_nothing() -> None:
    code = ("import gc; from mailroute.adapters import collector; "
            "collector.resume_after_start_up(); "
            "print(gc.isenabled(), gc.get_freeze_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["True", "0"]
