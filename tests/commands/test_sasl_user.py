"""``--sasl-user`` is the envelope's authenticated user for ``process`` and ``pipe``: the
``authenticated`` condition sees it, as it sees the milter's ``{auth_authen}``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailroute.testing import build_message

POLICY = """
[[pipeline]]
filter = "headers"
add = { X-Submitted = "authenticated" }
[pipeline.when]
authenticated = true
"""


def _process(policy: Path, *extra: str) -> bytes:
    done = subprocess.run(
        [sys.executable, "-m", "mailroute", "process", "--config", str(policy),
         "--mail-from", "anna@corp.example", "--rcpt", "bob@partner.example", *extra],
        input=build_message(), capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(("extra", "marked"), [
    (("--sasl-user", "anna"), True),
    ((), False),
    (("--sasl-user", ""), False),   # the MTA passes an unknown macro as an empty argument
])
def test_process_sasl_user_is_the_authenticated_condition(tmp_path: Path,
                                                          extra: tuple[str, ...],
                                                          marked: bool) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    assert (b"X-Submitted: authenticated\r\n" in _process(policy, *extra)) is marked


def test_pipe_sasl_user_is_the_authenticated_condition(tmp_path: Path) -> None:
    from tests.smtpsink import SmtpSink

    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    with SmtpSink() as sink:
        for user in ("anna", ""):
            done = subprocess.run(
                [sys.executable, "-m", "mailroute", "pipe", "--config", str(policy),
                 "--sender", "anna@corp.example", "--sasl-user", user, "--reinject",
                 f"smtp:127.0.0.1:{sink.port}", "--log", "none", "--", "bob@partner.example"],
                input=build_message(), capture_output=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
        first, second = sink.wait_for(2)
    assert b"X-Submitted: authenticated\r\n" in first.body
    assert b"X-Submitted:" not in second.body
