"""`mailroute marker set|verify` as CLI.md pins them: exit codes, stdout, the JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailroute.cli import main
from mailroute.marker import DEFAULT_FIELD, check_message, parse_token
from mailroute.mime import parse
from tests.marker.helpers import (
    DAY,
    HOUR,
    MESSAGE,
    NOW,
    OTHER_TAG,
    SECRET_A_B64,
    key_file_text,
    ring,
    write_key_file,
)

MAILROUTE = [sys.executable, "-m", "mailroute"]
JSON_KEYS = {"valid", "verdict", "reason", "key_id", "age_seconds"}


def run(args: list[str], data: bytes = MESSAGE) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*MAILROUTE, *args], input=data, capture_output=True, timeout=60,
                          check=False)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return write_key_file(tmp_path)


def set_marker(keys: Path, *extra: str, now: int = NOW, data: bytes = MESSAGE) -> bytes:
    done = run(["marker", "set", "--key-file", str(keys), "--now", str(now), *extra], data)
    assert done.returncode == 0, done.stderr
    return done.stdout


def verify_json(keys: Path, data: bytes, *extra: str) -> tuple[int, dict[str, object]]:
    done = run(["marker", "verify", "--key-file", str(keys), "--json", *extra], data)
    assert done.stdout.endswith(b"\n")
    return done.returncode, json.loads(done.stdout)


def test_set_adds_one_marker_dated_by_now_and_keeps_the_rest(keys: Path) -> None:
    out = set_marker(keys, "--direction", "inbound")
    message = parse(out)
    value = message.headers.value(DEFAULT_FIELD)
    assert value is not None
    token = parse_token(value)
    assert token is not None
    assert (token.t, token.d, token.kid) == (str(NOW), "i", "k1")
    assert out.endswith(MESSAGE)
    assert check_message(message, ring(), now=NOW).valid


def test_set_replaces_an_existing_marker(keys: Path) -> None:
    twice = set_marker(keys, data=set_marker(keys, now=NOW - DAY))
    assert parse(twice).headers.count(DEFAULT_FIELD) == 1
    assert check_message(parse(twice), ring(), now=NOW).age_seconds == 0


def test_set_without_signing_key_exits_75_with_nothing_on_stdout(tmp_path: Path) -> None:
    retired = write_key_file(tmp_path, key_file_text(keys=(
        {"id": "k1", "secret": SECRET_A_B64, "sign_until": NOW},)))
    done = run(["marker", "set", "--key-file", str(retired), "--now", str(NOW)])
    assert done.returncode == 75
    assert done.stdout == b""
    assert done.stderr.startswith(b"4.3.0 ")
    assert SECRET_A_B64.encode() not in done.stderr


def test_set_with_group_readable_key_file_exits_78(tmp_path: Path) -> None:
    done = run(["marker", "set", "--key-file", str(write_key_file(tmp_path, mode=0o640))])
    assert done.returncode == 78
    assert done.stdout == b""
    assert b"group or others" in done.stderr


def test_set_on_malformed_input_exits_65(keys: Path) -> None:
    done = run(["marker", "set", "--key-file", str(keys)], b"Subject: " + b"x" * 5000 + b"\r\n")
    assert done.returncode == 65
    assert done.stdout == b""
    assert done.stderr.startswith(b"5.")


def test_set_usage_error_exits_2() -> None:
    assert run(["marker", "set"]).returncode == 2
    assert run(["marker", "set", "--key-file", "k", "--now", "yesterday"]).returncode == 2


def test_verify_json_shape_for_a_valid_fresh_marker(keys: Path) -> None:
    code, report = verify_json(keys, set_marker(keys), "--now", str(NOW + 42))
    assert code == 0
    assert set(report) == JSON_KEYS
    assert report == {"valid": True, "verdict": "valid-fresh", "reason": report["reason"],
                      "key_id": "k1", "age_seconds": 42}
    assert isinstance(report["reason"], str)
    assert report["reason"]


@pytest.mark.parametrize(("offset", "extra", "verdict", "code"), [
    (2 * HOUR, (), "valid-stale", 0),
    (8 * DAY, (), "expired", 1),
    (2 * HOUR, ("--max-age", "3600"), "expired", 1),
    (-HOUR, (), "future", 1),
])
def test_verify_exit_codes_follow_the_verdict(keys: Path, offset: int, extra: tuple[str, ...],
                                              verdict: str, code: int) -> None:
    marked = set_marker(keys)
    got, report = verify_json(keys, marked, "--now", str(NOW + offset), *extra)
    assert (got, report["verdict"], report["valid"]) == (code, verdict, code == 0)


def test_verify_negative_verdicts_exit_1(keys: Path, tmp_path: Path) -> None:
    marked = set_marker(keys)
    foreign_keys = write_key_file(tmp_path, key_file_text(tag=OTHER_TAG), name="other.toml")
    cases = {
        "missing": (keys, MESSAGE),
        "bad-mac": (keys, marked.replace(b"bob@example.org", b"eve@example.org").replace(
            b"Alice@Example.NET", b"eve@example.net")),
        "malformed": (keys, marked.replace(b"X-Mailroute-Mark: v1.", b"X-Mailroute-Mark: v2.")),
        "foreign": (foreign_keys, marked),
    }
    for verdict, (key_file, data) in cases.items():
        code, report = verify_json(key_file, data, "--now", str(NOW))
        assert (code, report["verdict"], report["valid"]) == (1, verdict, False), verdict
        assert set(report) == JSON_KEYS
    code, report = verify_json(keys, MESSAGE, "--now", str(NOW))
    assert (report["key_id"], report["age_seconds"]) == (None, None)


def test_verify_without_json_prints_nothing_on_stdout(keys: Path) -> None:
    done = run(["marker", "verify", "--key-file", str(keys)], MESSAGE)
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.startswith(b"marker missing")
    valid = run(["marker", "verify", "--key-file", str(keys), "--now", str(NOW)],
                set_marker(keys))
    assert (valid.returncode, valid.stdout) == (0, b"")


def test_verify_reads_in_file(keys: Path, tmp_path: Path) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(set_marker(keys))
    assert main(["marker", "verify", "--key-file", str(keys), "--now", str(NOW),
                 "--in", str(path)]) == 0


def test_verify_with_bad_key_file_exits_78(tmp_path: Path) -> None:
    assert main(["marker", "verify", "--key-file", str(tmp_path / "absent")]) == 78


def test_now_feeds_the_filter_clock_through_main(keys: Path, tmp_path: Path) -> None:
    source, out = tmp_path / "in.eml", tmp_path / "out.eml"
    source.write_bytes(MESSAGE)
    assert main(["marker", "set", "--key-file", str(keys), "--now", "1234567890",
                 "--in", str(source), "--out", str(out)]) == 0
    token = parse_token(parse(out.read_bytes()).headers.value(DEFAULT_FIELD) or "")
    assert token is not None
    assert token.t == "1234567890"


def test_process_refuses_a_fresh_marker_from_exchange_with_69(keys: Path,
                                                              tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[pipeline]]\nfilter = "marker-verify"\nkey_file = "{keys.name}"\n'
                      f'[[pipeline]]\nfilter = "marker-set"\nkey_file = "{keys.name}"\n')
    now_marked = set_marker(keys, now=int(time.time()))
    done = run(["process", "--config", str(policy), "--tls-name",
                "mail.protection.outlook.com"], now_marked)
    assert (done.returncode, done.stdout) == (69, b"")
    assert done.stderr.startswith(b"5.4.6 ")
    from_internet = run(["process", "--config", str(policy)], now_marked)
    assert from_internet.returncode == 0
    assert parse(from_internet.stdout).headers.count(DEFAULT_FIELD) == 1


def test_process_with_on_missing_reject_refuses_unmarked_mail_with_69(keys: Path,
                                                                      tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[pipeline]]\nfilter = "marker-verify"\nkey_file = "{keys.name}"\n'
                      'on_missing = "reject"\n')
    refused = run(["process", "--config", str(policy)], MESSAGE)
    assert (refused.returncode, refused.stdout) == (69, b"")
    assert refused.stderr.startswith(b"5.7.1 ")
    marked = set_marker(keys, now=int(time.time()))
    passed = run(["process", "--config", str(policy)], marked)
    assert passed.returncode == 0
    assert DEFAULT_FIELD.encode() not in passed.stdout  # verified and stripped
    made_up = MESSAGE.replace(b"Subject:", DEFAULT_FIELD.encode() + b": garbage\r\nSubject:")
    forged = run(["process", "--config", str(policy)], made_up)
    assert (forged.returncode, forged.stdout) == (69, b"")
    assert forged.stderr.startswith(b"5.7.1 ")


def test_diagnostics_of_minus_v_come_after_the_status_line(keys: Path, tmp_path: Path) -> None:
    """CLI.md: the first line on standard error is the status (pipe(8) reads it); the
    filter's log records of the same run come after it."""
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[pipeline]]\nfilter = "marker-verify"\nkey_file = "{keys.name}"\n'
                      'on_missing = "reject"\n')
    made_up = MESSAGE.replace(b"Subject:", DEFAULT_FIELD.encode() + b": garbage\r\nSubject:")
    done = run(["-v", "process", "--config", str(policy)], made_up)
    assert (done.returncode, done.stdout) == (69, b"")
    first, *rest = done.stderr.decode().splitlines()
    assert first.startswith("5.7.1 ")
    assert any(line.startswith("mailroute: INFO gateway refused: ") for line in rest), rest
