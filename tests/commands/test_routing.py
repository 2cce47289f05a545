"""``mailroute route``, ``simulate`` and ``exo-config`` as the CLI.md contract pins them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailroute.cli import main
from tests.routing.support import EXAMPLES, FILES, NOW

T2 = str(EXAMPLES / FILES["t2"])
GOLDEN = Path(__file__).resolve().parents[1] / "routing" / "golden"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_route_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "route", "--config", T2, "--mail-from", "alice@example.net",
                        "--rcpt", "x@partner.example", "--direction", "outbound", "--json",
                        "--now", str(NOW))
    assert code == 0
    obj = json.loads(out)
    assert {"action", "next_hop", "connector", "rules", "reason"} <= obj.keys()
    assert obj["action"] == "relay"
    assert obj["next_hop"] == "mailroute.example.net"
    assert obj["connector"] == "mailroute EXO to gateway"
    assert obj["rules"] == ["mailroute 00 reset bypass", "mailroute 10 route to gateway"]
    assert isinstance(obj["reason"], str)


def test_route_refusal_exits_69_with_status_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "route", "--config", T2, "--mail-from", "x@evil.example",
                          "--rcpt", "nobody@example.net", "--client-ip", "198.51.100.1",
                          "--json")
    assert code == 69
    assert json.loads(out)["action"] == "reject"
    assert err.startswith("5.4.1 ")


def test_route_at_the_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "route", "--config", T2, "--at", "gateway", "--mail-from",
                        "x@partner.example", "--rcpt", "bob@example.net", "--client-ip",
                        "198.51.100.1", "--json")
    assert code == 0
    assert json.loads(out)["next_hop"] == "example-net.mail.protection.outlook.com"


def test_simulate_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "simulate", "--config", T2, "--mail-from",
                        "x@partner.example", "--rcpt", "bob@example.net", "--json",
                        "--now", str(NOW))
    assert code == 0
    obj = json.loads(out)
    assert obj["loop"] is False
    assert obj["delivered_to"] == "mailbox:bob@example.net"
    assert [h["at"] for h in obj["hops"]] == ["EXO pass 1", "gateway pass 1", "EXO pass 2"]
    for hop in obj["hops"]:
        assert {"at", "action", "next_hop", "connector", "rules", "reason"} <= hop.keys()


def test_simulate_text_and_exit_1_on_a_loop(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "t2.toml"
    broken.write_text(Path(T2).read_text(encoding="utf-8").replace(
        '[[tenant.accepted_domains]]\ndomain = "example.net"\n',
        '[[tenant.accepted_domains]]\ndomain = "example.net"\n\n[[tenant.accepted_domains]]\n'
        'domain = "legacy.example.net"\ntype = "InternalRelay"\n').replace(
        '"example.net" = "eop"', '"example.net" = "eop"\n"legacy.example.net" = "eop"'),
        encoding="utf-8")
    code, out, _ = _run(capsys, "simulate", "--config", str(broken), "--mail-from",
                        "alice@example.net", "--rcpt", "u@legacy.example.net")
    assert code == 1
    assert "verdict: LOOP" in out
    code, _, err = _run(capsys, "exo-config", "--config", str(broken))
    assert code == 78
    assert "L-INTERNALRELAY-LOOP" in err
    # one line per finding, file first: no SMTP status prefix (it means nothing offline)
    assert all(line.startswith(f"{broken}: ") for line in err.splitlines())


@pytest.mark.parametrize("name", sorted(FILES))
def test_exo_config_prints_the_golden(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(EXAMPLES / FILES[name])
    code, out, _ = _run(capsys, "exo-config", "--config", config)
    assert code == 0
    assert out == (GOLDEN / FILES[name].replace(".toml", ".ps1")).read_text(encoding="utf-8")
    code, out, _ = _run(capsys, "exo-config", "--config", config, "--format", "mermaid")
    assert code == 0
    assert out == (GOLDEN / FILES[name].replace(".toml", ".mmd")).read_text(encoding="utf-8")


def test_exo_config_script_with_mermaid_is_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "exo-config", "--config", T2, "--format", "mermaid",
                          "--script", "install")
    assert code == 2
    assert out == ""
    assert "--script" in err
    code, out, _ = _run(capsys, "exo-config", "--config", T2, "--script", "install")
    assert code == 0
    assert "New-TransportRule" in out


def test_config_error_exits_78_with_file_and_key(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(T2).read_text(encoding="utf-8").replace(
        "[exo_config]", "[exo_config]\nplacment = 'top'"), encoding="utf-8")
    for command in ("route", "simulate", "exo-config"):
        argv = [command, "--config", str(bad)]
        if command != "exo-config":
            argv += ["--mail-from", "a@example.net", "--rcpt", "b@example.net"]
        code, out, err = _run(capsys, *argv)
        assert code == 78
        assert out == ""
        assert str(bad) in err
        assert "exo_config.placment" in err


def test_bad_header_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "simulate", "--config", T2, "--mail-from", "a@example.net",
                        "--rcpt", "b@example.net", "--header", "no colon here")
    assert code == 2
    assert out == ""
