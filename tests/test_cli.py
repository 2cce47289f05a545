"""The `mailroute` command as an MTA calls it: a real process, stdin to stdout, sysexits."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroute.mime import DefectKind, parse
from tests.mime.strategies import messages
from tests.mime.test_edits import MIXED

MAILROUTE = [sys.executable, "-m", "mailroute"]


def run(args: list[str], data: bytes, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*MAILROUTE, *args], input=data, capture_output=True, timeout=60,
                          check=False, cwd=cwd)


@pytest.fixture
def empty_policy(tmp_path: Path) -> Path:
    path = tmp_path / "empty.toml"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("data", [
    MIXED,
    MIXED.replace(b"\r\n", b"\n"),
    b"Subject: x\r\n\r\nbinary \x00\xff\xfe\r\nno final newline",
])
def test_process_with_an_empty_policy_copies_input_byte_for_byte(empty_policy: Path,
                                                                 data: bytes) -> None:
    done = run(["process", "--config", str(empty_policy)], data)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


@pytest.mark.parametrize("data", [b"", b"\r\n", b" \n\n"], ids=["empty", "crlf", "blank"])
def test_an_empty_message_is_malformed_and_nothing_is_written(tmp_path: Path,
                                                              data: bytes) -> None:
    """Found by the CLI audit: an empty standard input (or a closed one) became a message of
    the filters' own fields (a marker, a Message-ID, a disclaimer) and was handed on."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[[pipeline]]\nfilter = "headers"\nadd = { X-Seen = "yes" }\n')
    done = run(["process", "--config", str(policy)], data)
    assert (done.returncode, done.stdout) == (65, b"")
    assert done.stderr.decode().splitlines()[0] == "5.6.0 the message is empty"


@pytest.mark.parametrize("data", [
    b"From: a@example.net\r\nFrom: b@example.net\r\n\r\nbody",
    b"Subject: x\r\n" + b"".join(b'Content-Type: multipart/mixed; boundary="b%04d"\r\n\r\n'
                                  b"--b%04d\r\n" % (i, i) for i in range(150)),
    b"Subject: " + b"x" * 5000 + b"\r\n\r\n",
])
def test_malformed_or_over_limit_input_exits_65_with_empty_stdout(empty_policy: Path,
                                                                  data: bytes) -> None:
    done = run(["process", "--config", str(empty_policy)], data)
    assert done.returncode == 65
    assert done.stdout == b""
    assert done.stderr.startswith(b"5.")


def test_over_size_input_answers_5_3_4(tmp_path: Path) -> None:
    policy = tmp_path / "small.toml"
    policy.write_text("[limits]\nmax_message_size = 100\n")
    done = run(["process", "--config", str(policy)], b"Subject: x\r\n\r\n" + b"a" * 200)
    assert done.returncode == 65
    assert done.stdout == b""
    assert done.stderr.startswith(b"5.3.4 ")


def test_invalid_policy_exits_78_naming_file_and_key(tmp_path: Path) -> None:
    policy = tmp_path / "bad.toml"
    policy.write_text("[limits]\nmax_depht = 3\n")
    done = run(["process", "--config", str(policy)], MIXED)
    assert done.returncode == 78
    assert done.stdout == b""
    assert str(policy).encode() in done.stderr
    assert b"limits.max_depht" in done.stderr


def test_usage_error_exits_2() -> None:
    assert run(["process"], b"").returncode == 2
    assert run(["no-such-command"], b"").returncode == 2


def test_help_lists_process() -> None:
    done = run(["--help"], b"")
    assert done.returncode == 0
    assert b"process" in done.stdout


def test_in_and_out_files(tmp_path: Path, empty_policy: Path) -> None:
    source, target = tmp_path / "in.eml", tmp_path / "out.eml"
    source.write_bytes(MIXED)
    done = run(["process", "--config", str(empty_policy), "--in", str(source), "--out",
                str(target)], b"")
    assert done.returncode == 0
    assert target.read_bytes() == MIXED
    assert done.stdout == b""


def _process_to(target: Path | str, policy: Path) -> subprocess.CompletedProcess[bytes]:
    return run(["process", "--config", str(policy), "--out", str(target)], MIXED)


def test_out_writes_through_a_device_or_a_link_to_one(tmp_path: Path,
                                                      empty_policy: Path) -> None:
    """Found by the CLI audit: ``--out`` renamed a file over a symbolic link to standard
    output and over a device (``--out /dev/null`` as root replaced /dev/null)."""
    (tmp_path / "so").symlink_to("/proc/self/fd/1")
    done = _process_to(tmp_path / "so", empty_policy)
    assert (done.returncode, done.stdout) == (0, MIXED)
    assert (tmp_path / "so").is_symlink()
    fifo = tmp_path / "fifo"                     # a non-regular file, as /dev/null is
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert _process_to(fifo, empty_policy).returncode == 0
    reader.join(10)
    assert received == [MIXED]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_out_keeps_a_link_and_the_mode_of_the_file_it_replaces(tmp_path: Path,
                                                               empty_policy: Path) -> None:
    real, link = tmp_path / "real.eml", tmp_path / "link.eml"
    real.write_bytes(b"old")
    real.chmod(0o644)
    link.symlink_to(real)
    assert _process_to(link, empty_policy).returncode == 0
    assert link.is_symlink()
    assert real.read_bytes() == MIXED
    assert real.stat().st_mode & 0o777 == 0o644


def test_out_dash_is_standard_output(tmp_path: Path, empty_policy: Path) -> None:
    done = run(["process", "--config", str(empty_policy), "--out", "-"], MIXED, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, MIXED)
    assert not (tmp_path / "-").exists()


def test_out_file_is_not_written_on_failure(tmp_path: Path, empty_policy: Path) -> None:
    target = tmp_path / "out.eml"
    done = run(["process", "--config", str(empty_policy), "--out", str(target)],
               b"From: a\r\nFrom: b\r\n\r\n")
    assert done.returncode == 65
    assert not target.exists()


def test_policy_rejection_exits_69(tmp_path: Path) -> None:
    """A filter outcome 'reject' (not a message error) maps to EX_UNAVAILABLE."""
    from mailroute import Result
    from mailroute.adapters.pipe import exit_code_for
    from mailroute.errors import PolicyError
    from mailroute.results import Action, Reply

    rejected = Result(Action.REJECT, None, Reply(554, "5.7.1", "no"), error=PolicyError("no"))
    outcome = Result(Action.REJECT, None, Reply(554, "5.7.1", "no"))
    assert exit_code_for(rejected) == 69
    assert exit_code_for(outcome) == 69


def test_internal_error_in_the_pipe_adapter_exits_75(tmp_path: Path) -> None:
    """A bug anywhere below the adapter must make the MTA retry, not bounce or lose mail."""
    import io

    from mailroute.adapters.pipe import run_pipe
    from mailroute.pipeline import Pipeline

    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise MemoryError

    err = io.StringIO()
    out = io.BytesIO()
    code = run_pipe(Pipeline(), Broken(), out, err)
    assert code == 75
    assert out.getvalue() == b""
    assert err.getvalue().startswith("4.3.0 ")


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=2000), messages().map(lambda built: built.data)))
def test_empty_policy_copies_any_input_or_refuses_it_cleanly(data: bytes) -> None:
    """The pipe adapter's contract over arbitrary bytes: identity, or 65 with nothing written."""
    import io

    from mailroute.adapters.pipe import run_pipe
    from mailroute.pipeline import Pipeline

    out, err = io.BytesIO(), io.StringIO()
    code = run_pipe(Pipeline(), io.BytesIO(data), out, err)
    if code == 0:
        assert out.getvalue() == data
        assert err.getvalue() == ""
    else:
        assert code == 65
        assert out.getvalue() == b""
        assert err.getvalue().startswith("5.")


@pytest.mark.parametrize("command", [
    ["process", "--config", "/dev/null"],
    ["marker", "verify", "--key-file", "/nonexistent/keys.toml"],
])
def test_unreadable_in_file_is_a_usage_error_not_a_tempfail(tmp_path: Path,
                                                            command: list[str]) -> None:
    done = run([*command, "--in", str(tmp_path / "missing.eml")], b"")
    assert done.returncode in (2, 78)
    assert done.stdout == b""
    assert b"internal error" not in done.stderr


def test_unreadable_in_file_exits_2(tmp_path: Path, empty_policy: Path) -> None:
    done = run(["process", "--config", str(empty_policy), "--in",
                str(tmp_path / "missing.eml")], b"")
    assert done.returncode == 2
    assert b"missing.eml" in done.stderr


@pytest.mark.parametrize("name", ["msg_15.txt", "msg_39.txt"])
def test_empty_policy_copies_nested_multiparts_that_reuse_a_boundary(name: str,
                                                                      empty_policy: Path) -> None:
    """Outlook Express for Mac reused the outer boundary in a nested multipart (CPython's
    test messages): recorded as structural doubt, copied byte for byte, never refused."""
    data = (Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data" / name
            ).read_bytes()
    done = subprocess.run([sys.executable, "-m", "mailroute", "process", "--config",
                           str(empty_policy)], input=data, capture_output=True, timeout=60,
                          check=False)
    assert (done.returncode, done.stdout) == (0, data)
    template = empty_policy.parent / "footer.txt"
    template.write_text("-- \nConfidential.\n")
    edited = subprocess.run([sys.executable, "-m", "mailroute", "disclaimer", "--text",
                             str(template)], input=data, capture_output=True, timeout=60,
                            check=False)
    assert edited.returncode == 0
    message = parse(data)
    doubtful = [d.path for d in message.defects if d.kind is DefectKind.NESTED_BOUNDARY_REUSE]
    assert doubtful
    for path in doubtful:  # no edit inside the part whose boundary was reused
        assert message.part(path).to_bytes() in edited.stdout


@pytest.mark.parametrize(("blocked", "args", "extra"), [
    ("gnupg", ["pgp", "verify", "--gnupghome", "home"], "mailroute[pgp]"),
    ("dns", ["dkim", "verify"], "mailroute[dkim]"),
    ("dns", ["process", "--config", "dkim-verify.toml"], "install mailroute[dkim]"),
    ("aiosmtpd", ["serve", "--config", "empty.toml", "--listen", "127.0.0.1:1",
                  "--next-hop", "127.0.0.1:2"], "mailroute[smtp]"),
], ids=["pgp-verify", "dkim-verify", "dkim-verify-policy", "serve"])
def test_a_missing_extra_is_a_configuration_error_naming_it(
        tmp_path: Path, blocked: str, args: list[str], extra: str) -> None:
    """78 with the extra to install, never the 75 of an internal error (a milter or pipe
    that is merely not installed completely is no reason for the MTA to retry)."""
    (tmp_path / "empty.toml").write_text("")
    (tmp_path / "dkim-verify.toml").write_text('[[pipeline]]\nfilter = "dkim-verify"\n')
    # sys.modules[name] = None blocks an import, as an environment without the extra would
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "from mailroute.cli import main\n"
            f"sys.exit(main({args!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], input=b"Subject: x\r\n\r\nhi\r\n",
                          capture_output=True, check=False, cwd=tmp_path, timeout=60)
    assert done.returncode == 78, done.stderr
    assert done.stdout == b""
    assert done.stderr.startswith(b"4.3.5 configuration error: ")
    assert extra.encode() in done.stderr
    assert b"internal error" not in done.stderr


TOPOLOGY = Path(__file__).resolve().parents[1] / "examples" / "topologies" / \
    "t2-beside-mx-eop.toml"


@pytest.mark.parametrize("args", [
    ["process", "--mail-from", "a\nb@example.net"],
    ["process", "--rcpt", "b@example.net\r"],
    ["process", "--sasl-user", "anna\nX-Injected: yes"],
    ["process", "--client-ip", "999.1.1.1"],
    ["process", "--client-ip", "mx.example.net"],
    ["route", "--config", str(TOPOLOGY), "--now", "99999999999999999999", "--rcpt", "b@x.net"],
    ["route", "--config", str(TOPOLOGY), "--now", "253402300800", "--rcpt", "b@x.net"],
    ["smime", "verify", "--trust", str(TOPOLOGY), "--now", "253402300800"],
    ["marker", "rotate", "--key-file", "keys.toml", "--keep", "99999999999999"],
], ids=["lf-sender", "cr-rcpt", "lf-sasl-user", "client-ip-octet-999",
        "client-ip-a-name", "now-overflow", "now-year-10000",
        "verify-year-10000", "keep-overflow"])
def test_values_no_command_can_use_are_usage_errors(args: list[str],
                                                    empty_policy: Path) -> None:
    """Found by the CLI audit: each was ``4.3.0 internal error``, exit 75."""
    if args[0] == "process":
        args = [*args, "--config", str(empty_policy)]
    done = run(args, MIXED)
    assert done.returncode == 2, done.stderr
    assert b"internal error" not in done.stderr


@pytest.mark.parametrize(("given", "logged"), [
    ("<anna@example.net>", "sender=<anna@example.net>"), ("<>", "sender=<>")])
def test_envelope_addresses_in_angle_brackets_are_the_addresses(
        given: str, logged: str, empty_policy: Path) -> None:
    """Found by the CLI audit: ``--mail-from '<a@b>'`` was the sender ``<<a@b>>`` (and the
    direction came out wrong); ``<>`` was no null sender."""
    done = run(["process", "--config", str(empty_policy), "--log", "stderr",
                "--mail-from", given, "--rcpt", "<max@partner.example>"], MIXED)
    assert done.returncode == 0, done.stderr
    line = done.stderr.decode()
    assert logged in line
    assert "<<" not in line


@pytest.mark.parametrize(("closed", "code"), [("<&-", 65), (">&-", 75), ("2>&-", 65)],
                         ids=["stdin", "stdout", "stderr"])
def test_a_closed_standard_stream_gives_the_contract_exit_code(
        tmp_path: Path, empty_policy: Path, closed: str, code: int) -> None:
    """Found by the CLI audit: Python sees a closed stream as None; every use was an
    internal error (75) or, for standard error, exit 1, which an MTA takes as permanent."""
    source = tmp_path / "in.eml"
    source.write_bytes(b"From: a@example.net\r\nFrom: b@example.net\r\n\r\nambiguous\r\n"
                       if closed != ">&-" else MIXED)
    given = [] if closed == "<&-" else ["--in", str(source)]
    command = shlex.join([*MAILROUTE, "process", "--config", str(empty_policy), *given])
    command += f" {closed}"
    done = subprocess.run(["sh", "-c", command], capture_output=True, timeout=60, check=False)
    assert done.returncode == code, done.stderr


@pytest.mark.parametrize("args", [
    ["disclaimer", "--text", "d.txt", "--var", "novalue"],
    ["disclaimer", "--text", "d.txt", "--var", "company=A\udce9B"],
    ["dkim", "sign", "--domain", "ex\udce9.net", "--selector", "s", "--key", "k.pem"],
    ["dkim", "verify", "--dns-timeout", "nan"],
    ["dkim", "verify", "--dns-timeout", "-1"],
    ["serve", "--config", "p.toml", "--listen", "127.0.0.1:1", "--next-hop", "127.0.0.1:2",
     "--processing-timeout", "inf"],
    ["marker", "keygen", "--key-file", "k.toml", "--org-id", "a\nb"],
], ids=["var-without-value", "var-not-utf8", "dkim-domain-not-utf8", "dns-timeout-nan",
        "dns-timeout-negative", "serve-timeout-inf", "org-id-two-lines"])
def test_arguments_that_are_no_usable_text_are_usage_errors(tmp_path: Path,
                                                             args: list[str]) -> None:
    """Found by the CLI and DKIM audits: 78 (a bad policy), 75 (internal error), 65 (blaming
    the message) or a wait for ever (``--dns-timeout nan``) for what is a wrong argument."""
    (tmp_path / "d.txt").write_text("-- \nfooter\n")
    argv = [os.fsencode(a) if "\udce9" in a else a for a in args]
    done = subprocess.run([*MAILROUTE, *argv], input=MIXED, capture_output=True, timeout=60,
                          check=False, cwd=tmp_path)
    assert done.returncode == 2, done.stderr


@pytest.mark.parametrize("command", [["process", "--config"], ["check", "--config"]])
def test_a_fifo_named_as_policy_is_refused_not_waited_on(tmp_path: Path,
                                                         command: list[str]) -> None:
    """Found by the CLI audit: ``--config FIFO`` waited for a writer for ever."""
    fifo = tmp_path / "policy.toml"
    os.mkfifo(fifo)
    done = run([*command, str(fifo)], MIXED)
    assert done.returncode == 78
    assert b"not a regular file" in done.stderr
