"""The systemd units in examples/systemd/: `systemd-analyze verify` accepts them without a
single warning, `systemd-analyze security` rates their sandbox, and the milter unit's command
line is one `mailroute` accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailroute import cli

UNITS = Path(__file__).resolve().parents[1] / "examples" / "systemd"
INSTALLED = "/opt/mailroute/bin/mailroute"
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd; "
                            "scripts/setup-system installs it)")


def _here(unit: Path, folder: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's mailroute (verify checks that the
    program exists; /opt/mailroute is where docs/install-debian.md installs it)."""
    mailroute = Path(sys.executable).parent / "mailroute"
    copy = folder / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED, str(mailroute)))
    return copy


def _exec_start(unit: Path, key: str = "ExecStart") -> list[str]:
    text = unit.read_text().replace("\\\n", " ")
    [line] = re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)
    return shlex.split(line)


@needs_analyze
@pytest.mark.parametrize("name", ["mailroute-milter.service", "mailroute-serve.service"])
def test_systemd_analyze_verify_accepts_the_unit_without_warnings(name: str,
                                                                  tmp_path: Path) -> None:
    assert ANALYZE is not None
    unit = _here(UNITS / name, tmp_path)
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, timeout=60,
                          check=False)
    assert (done.returncode, done.stderr.decode(), done.stdout.decode()) == (0, "", "")


@needs_analyze
@pytest.mark.parametrize("name", ["mailroute-milter.service", "mailroute-serve.service"])
def test_the_sandbox_rates_ok_in_systemd_analyze_security(name: str, tmp_path: Path) -> None:
    assert ANALYZE is not None
    unit = _here(UNITS / name, tmp_path)
    done = subprocess.run([ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
                          capture_output=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", done.stdout.decode())
    assert found, done.stdout.decode()[-2000:] + done.stderr.decode()
    assert float(found.group(1)) <= 2.0, done.stdout.decode()   # systemd: "OK" up to 2.9
    unit_text = unit.read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=mailroute",
                 "User=mailroute", "CapabilityBoundingSet=\n"):
        assert line in unit_text


def test_the_milter_unit_runs_a_command_mailroute_accepts() -> None:
    unit = UNITS / "mailroute-milter.service"
    for key in ("ExecStartPre", "ExecStart"):
        argv = _exec_start(unit, key)
        assert argv[0] == INSTALLED
        args = cli.build_parser(argv[1:]).parse_args(argv[1:])
        assert str(args.config) == "/etc/mailroute/policy.toml"


def test_the_milter_unit_reloads_by_checking_the_policy_then_sending_sighup() -> None:
    text = (UNITS / "mailroute-milter.service").read_text()
    check, signal = (shlex.split(line) for line in
                     re.findall(r"^ExecReload=(.*)$", text, re.MULTILINE))
    assert check[:2] == [INSTALLED, "check"]
    assert str(cli.build_parser(check[1:]).parse_args(check[1:]).config) == \
        "/etc/mailroute/policy.toml"
    assert signal == ["/bin/kill", "-HUP", "$MAINPID"]


def test_the_serve_unit_runs_serve_as_the_cli_contract_pins_it() -> None:
    argv = _exec_start(UNITS / "mailroute-serve.service")
    assert argv[:2] == [INSTALLED, "serve"]
    flags = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert set(flags) == {"--config", "--listen", "--next-hop"}
    assert all(re.fullmatch(r"[\d.]+:\d+", flags[f]) for f in ("--listen", "--next-hop"))
