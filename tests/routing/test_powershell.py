"""The generated Exchange Online configuration: goldens, quoting, the cmdlet allow-list."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mailroute.routing import (
    UnsafeValueError,
    build_plan,
    exo_config,
    ps_quote,
    render_powershell,
)
from mailroute.routing.model import AcceptedDomain
from mailroute.routing.powershell import ALLOWED, IMPLIED_CMDLETS
from tests.routing.support import EXAMPLES, FILES, topology

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MAILROUTE_UPDATE_GOLDEN") == "1"
CMDLET = re.compile(r"(?<![\w$-])([A-Z][a-z]+-[A-Za-z]+)\b")
PARAM = re.compile(r"(?:^|\s)-([A-Za-z]+)(?=[\s:]|$)")
QUOTED = re.compile(r"'(?:[^']|'')*'")


def _golden(name: str, text: str) -> str:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(FILES))
def test_powershell_matches_golden(name: str) -> None:
    text, _ = exo_config(topology(name))
    assert text == _golden(FILES[name].replace(".toml", ".ps1"), text)


@pytest.mark.parametrize("name", sorted(FILES))
def test_mermaid_matches_golden(name: str) -> None:
    text, _ = exo_config(topology(name), fmt="mermaid")
    assert text == _golden(FILES[name].replace(".toml", ".mmd"), text)
    assert text.startswith("flowchart LR\n")


def _statements(text: str) -> list[str]:
    """Logical lines with continuations joined, quoted strings blanked, comments kept out."""
    joined = text.replace("`\n", " ")
    return [QUOTED.sub("''", line) for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _uses(text: str) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for statement in _statements(text):
        for segment in re.split(r"[|;{}()]", statement):
            found = CMDLET.search(segment)
            if found is None:
                continue
            used.setdefault(found.group(1), set()).update(PARAM.findall(segment[found.end():]))
    return used


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_cmdlet_and_parameter_is_in_the_allow_list(name: str) -> None:
    text, _ = exo_config(topology(name))
    used = _uses(text)
    assert "New-TransportRule" in used or name == "t1"
    assert "New-InboundConnector" in used
    for cmdlet, params in used.items():
        assert cmdlet in ALLOWED, cmdlet
        assert params <= ALLOWED[cmdlet], (cmdlet, params - ALLOWED[cmdlet])


def test_allow_list_helper_sees_a_foreign_cmdlet() -> None:
    used = _uses("Remove-Mailbox -Identity 'x' -Confirm:$false\n")
    assert used == {"Remove-Mailbox": {"Identity", "Confirm"}}
    assert "Remove-Mailbox" not in ALLOWED
    assert set(ALLOWED) > IMPLIED_CMDLETS


@pytest.mark.parametrize(("value", "literal"), [
    ("plain", "'plain'"), ("it's", "'it''s'"), ("''", "''''''"),
    ("a\u2019b", "'a\u2019\u2019b'"), ("$(Remove-Mailbox x)", "'$(Remove-Mailbox x)'"),
    ("`whoami`", "'`whoami`'")])
def test_single_quote_literals_double_every_quote_character(value: str, literal: str) -> None:
    assert ps_quote(value) == literal


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b", "a\x1bb", "a\u2028b", "\x7f"])
def test_control_characters_are_refused(value: str) -> None:
    with pytest.raises(UnsafeValueError, match="control character"):
        ps_quote(value)


@pytest.mark.parametrize("name", ["example.net\nRemove-Mailbox", "example.net\u2028x"])
def test_a_tenant_name_that_breaks_the_header_comment_line_is_refused(name: str) -> None:
    """The tenant name goes into the scripts' first comment line: a line separator (U+2028)
    shows as a new line in an editor (found by the routing audit; comments refused it)."""
    t2 = topology("t2")
    bad = replace(t2, tenant=replace(t2.tenant, name=name))
    with pytest.raises(UnsafeValueError, match="tenant name"):
        render_powershell(bad, build_plan(bad))


def test_hostile_names_stay_inside_literals() -> None:
    t2 = topology("t2")
    hostile = "gw'; Remove-Mailbox -Identity boss; '.example.net"
    evil = replace(t2, gateway=replace(t2.gateway, hostname=hostile))
    text = render_powershell(evil, build_plan(evil)).combined()
    assert "'gw''; Remove-Mailbox -Identity boss; ''.example.net'" in text
    assert "Remove-Mailbox" not in _uses(text)
    newline = replace(t2, gateway=replace(t2.gateway, hostname="gw.example.net\nRemove-Mailbox"))
    with pytest.raises(UnsafeValueError):
        render_powershell(newline, build_plan(newline))


def test_name_longer_than_64_characters_is_refused() -> None:
    with pytest.raises(UnsafeValueError, match="64"):
        ps_quote("x" * 65, key="Name", limit=64)
    t1 = topology("t1")
    plan = build_plan(t1)
    long = replace(plan, outbound_connectors=(replace(plan.outbound_connectors[0],
                                                      name="mailroute " + "x" * 60),))
    with pytest.raises(UnsafeValueError):
        render_powershell(t1, long)


def test_t1_outbound_connector_is_created_disabled_and_enabled_later() -> None:
    scripts = render_powershell(topology("t1"), build_plan(topology("t1")))
    assert "-Enabled $false" in scripts.install
    assert ("Set-OutboundConnector -Identity 'mailroute EXO to gateway (all external)' "
            "-Enabled $true") in scripts.enable


@pytest.mark.parametrize("name", ["t1", "t3"])
def test_the_lock_down_connector_is_created_disabled_and_enabled_last(name: str) -> None:
    """Found by the routing audit: created enabled, it refused (550 5.7.51) all internet mail
    still sent to EOP's MX before the MX change, and from senders with the old MX cached."""
    scripts = render_powershell(topology(name), build_plan(topology(name)))
    lockdown = "'mailroute gateway to EXO (lock-down)'"
    created = scripts.install[scripts.install.index(f"New-InboundConnector -Name {lockdown}"):]
    assert "-Enabled $false" in created[:created.index("-Comment")]
    enable = f"Set-InboundConnector -Identity {lockdown} -Enabled $true"
    assert scripts.enable.rstrip().endswith(enable)
    assert "TTL has passed" in scripts.enable


def test_rules_created_disabled_then_enabled_in_priority_order() -> None:
    scripts = render_powershell(topology("t2"), build_plan(topology("t2")))
    created = re.findall(r"New-TransportRule -Name '([^']+)'", scripts.install)
    enabled = re.findall(r"Enable-TransportRule -Identity '([^']+)'", scripts.enable)
    removed = re.findall(r"Remove-TransportRule -Identity '([^']+)'", scripts.remove)
    assert created == enabled == removed
    assert scripts.install.count("-Enabled $false") == len(created)
    assert scripts.remove.index("Remove-TransportRule") < scripts.remove.index(
        "Remove-OutboundConnector")


DOCS = Path(__file__).resolve().parents[2] / "docs" / "routing"


@pytest.mark.parametrize("name", sorted(FILES))
def test_topology_page_shows_the_generated_diagram_and_script(name: str) -> None:
    page = (DOCS / FILES[name].replace(".toml", ".md")).read_text(encoding="utf-8")
    powershell, _ = exo_config(topology(name))
    mermaid, _ = exo_config(topology(name), fmt="mermaid")
    assert f"```mermaid\n{mermaid}```" in page
    assert f"```powershell\n{powershell}```" in page
    assert 'filter = "marker-set"' in page


def test_exo_config_that_cannot_be_written_says_so_first(tmp_path: Path) -> None:
    """CLI.md: with 75 the status line is the first on standard error (found by the CLI
    audit: the lint findings came first)."""
    with open("/dev/full", "wb") as full:
        done = subprocess.run([sys.executable, "-m", "mailroute", "exo-config", "--config",
                               str(EXAMPLES / FILES["t2"])], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert done.returncode == 75
    assert done.stderr.splitlines()[0].startswith("4.3.0 cannot write the result")


def test_a_tenant_with_many_domains_gets_a_comment_within_the_limit() -> None:
    """Found by the routing audit: 60 accepted domains made the lock-down connector's
    generated comment longer than 1024 characters, and exo-config refused (78)."""
    topo = topology("t3")
    many = tuple(AcceptedDomain(domain=f"brand{i:03}-example-holding.net") for i in range(60))
    topo = replace(topo, tenant=replace(topo.tenant, accepted_domains=(
        *topo.tenant.accepted_domains, *many)))
    scripts = render_powershell(topo, build_plan(topo))
    comment = re.search(r"-Comment '(mailroute T3: [^']*mail only[^']*)'", scripts.install)
    assert comment is not None
    assert len(comment.group(1)) <= 1024
    assert "and 56 more" in comment.group(1)
    assert "brand059-example-holding.net" in scripts.install   # AssociatedAcceptedDomains
