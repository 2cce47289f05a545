"""``exo-diff``: the tenant read back from ``Get-*`` JSON, diffed, linted and simulated.

The exports are the cmdlets' shapes (tests/routing/exports/README.md names the source of
each): the round trip writes the planned tenant as an export and reads it back; the
hand-edited ``t2-winps51`` directory carries Windows PowerShell 5.1's quirks. Each
misconfiguration of docs/routing/exo-diff.md (the admin reports behind lint) is planted in
an export and must show in the diff or the lint, and its loop, bypass or refusal in the
simulation of the tenant as read.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mailroute.cli import main
from mailroute.errors import ConfigError
from mailroute.item import Envelope
from mailroute.routing import Origin, Status, Topology, deployed, lint, simulate
from mailroute.routing.diff import Change, diff_tenants
from mailroute.routing.export import export_tenant
from mailroute.routing.model import Directory, Recipient, Tenant
from mailroute.routing.readback import load_export, parse_export, tenant_from_export
from tests.routing.support import EXAMPLES, FILES, NOW, message, topology

EXPORTS = Path(__file__).parent / "exports"
A, B, X = "alice@example.net", "bob@example.net", "x@partner.example"


def _read(name: str, data: dict[str, Any]) -> tuple[Topology, Tenant]:
    topo = topology(name)
    return topo, tenant_from_export(topo, parse_export(json.loads(json.dumps(data))))


@pytest.mark.parametrize("name", ["t1", "t2", "t3"])
def test_an_export_of_the_plan_diffs_empty_and_lints_like_the_plan(name: str) -> None:
    topo = topology(name)
    planned = deployed(topo)
    text = json.dumps(export_tenant(planned), indent=2)  # as a file would hold it
    read = tenant_from_export(topo, parse_export(json.loads(text)))
    assert diff_tenants(planned, read) == ()
    assert read.transport_rules == planned.rules_by_priority
    assert read.inbound_connectors == planned.inbound_connectors
    assert read.outbound_connectors == planned.outbound_connectors
    assert lint(topo, read) == lint(topo, planned)


def test_the_windows_powershell_export_directory_diffs_empty_against_the_t2_plan() -> None:
    """One file per cmdlet, with 5.1's shapes: SmtpDomain objects, one connector as a bare
    object, ``{"value": [], "Count": 0}`` arrays, a one-value array written bare,
    ``/Date(ms)/`` dates, ``smtp:*;1`` sender domains, extra properties."""
    topo = topology("t2")
    export = load_export(EXPORTS / "t2-winps51")
    read = tenant_from_export(topo, export)
    assert diff_tenants(deployed(topo), read) == ()
    assert export.inbound_connectors is not None
    assert export.inbound_connectors[0].sender_domains == ("*",)
    strip = next(r for r in read.transport_rules if r.name.startswith("mailroute 01"))
    assert strip.exceptions.sender_ip_ranges == ("203.0.113.10",)
    assert export.accepted_domains is not None
    assert {d.domain for d in export.accepted_domains} == {
        "example.net", "mailroute.example.net", "examplenet.onmicrosoft.com"}


def test_cli_exo_diff_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(EXAMPLES / FILES["t2"])
    assert main(["exo-diff", "--config", config, "--export", str(EXPORTS / "t2-winps51")]) == 0
    assert "no difference from the plan" in capsys.readouterr().out
    data = json.loads(json.dumps(export_tenant(deployed(topology("t2")))))
    data["InboundConnectors"][0]["RequireTls"] = False
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(data))
    assert main(["exo-diff", "--config", config, "--export", str(path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["differences"] == [{
        "change": "changed", "section": "InboundConnectors", "name": "mailroute gateway to EXO",
        "property": "RequireTls", "planned": True, "actual": False}]
    path.write_text("{not json")
    assert main(["exo-diff", "--config", config, "--export", str(path)]) == 78
    assert "invalid JSON" in capsys.readouterr().err


def test_cli_simulate_runs_on_the_tenant_as_read(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = str(EXAMPLES / FILES["t2"])
    data = export_tenant(deployed(topology("t2")))
    data["TransportRules"] = [r for r in data["TransportRules"]
                              if not r["Name"].startswith("mailroute 10")]
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(data))
    args = ["simulate", "--config", config, "--mail-from", A, "--rcpt", B, "--now", str(NOW)]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--export", str(path)]) == 1  # no routing rule: BYPASS
    assert "BYPASS" in capsys.readouterr().out


@pytest.mark.parametrize(("data", "where", "words"), [
    ({"InboundConnectors": {"Name": "c", "ConnectorType": 2}}, "ConnectorType",
     "EnumsAsStrings"),
    ({"TransportRules": [{"Name": "r", "State": 1}]}, "State", "EnumsAsStrings"),
    ({"TransportRules": [{"Name": "r", "HeaderMatchesMessageHeader": "X",
                          "HeaderMatchesPatterns": ["("]}]}, "HeaderMatchesPatterns",
     "regular expression"),
    ({"OutboundConnectors": [{"Enabled": True}]}, "OutboundConnectors[0]", "Name"),
    ({"Connectors": []}, "Connectors", "unknown export section"),
    ({"InboundConnectors": [{"Name": "c", "RequireTls": "maybe"}]}, "RequireTls", "true or"),
])
def test_bad_exports_are_typed_errors_naming_the_property(data: dict[str, Any], where: str,
                                                          words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_export(data)
    assert where in str(caught.value)
    assert words in str(caught.value)


def test_quirk_values_are_normalised() -> None:
    export = parse_export({
        "OutboundConnectors": {"Name": "o", "RecipientDomains": "smtp:*.partner.example;1",
                               "SmartHosts": {"value": ["relay.example"], "Count": 1}},
        "TransportRules": {"Name": "r", "State": "Disabled", "ExpiryDate": "/Date(1800000000000)/",
                           "SCLOver": {"Value": 5}, "MessageSizeOver": "10 MB (10,485,760 bytes)"},
        "OrganizationConfig": {"RejectDirectSend": True}})
    assert export.outbound_connectors is not None
    (out,) = export.outbound_connectors
    assert out.recipient_domains == ("*.partner.example",)
    assert out.smart_hosts == ("relay.example",)
    assert export.transport_rules is not None
    (rule,) = export.transport_rules
    assert not rule.enabled
    assert rule.expiry_date is not None
    assert rule.expiry_date.timestamp() == 1_800_000_000
    assert rule.conditions.scl_over == 5
    assert rule.conditions.message_size_over == 10_485_760
    assert export.reject_direct_send is True


# --- misconfigurations planted in an export ---------------------------------------------------

def _rule(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(r for r in data["TransportRules"] if r["Name"].startswith(prefix))


def _wrong_tag(data: dict[str, Any]) -> None:
    _rule(data, "mailroute 10")["ExceptIfHeaderMatchesPatterns"] = ["v1\\.abcdef\\."]


def _consume_first(data: dict[str, Any]) -> None:
    for r in data["TransportRules"]:
        r["Priority"] += 1
    _rule(data, "mailroute 11")["Priority"] = 0


def _internal_relay(data: dict[str, Any]) -> None:
    domain = next(d for d in data["AcceptedDomains"] if d["DomainName"] == "example.net")
    domain["DomainType"] = "InternalRelay"


def _audit(data: dict[str, Any]) -> None:
    _rule(data, "mailroute 10")["Mode"] = "Audit"


def _stop_above(data: dict[str, Any]) -> None:
    for r in data["TransportRules"]:
        r["Priority"] += 1
    data["TransportRules"].insert(0, {"Name": "Tag external mail", "Priority": 0,
                                      "State": "Enabled", "Mode": "Enforce",
                                      "SetHeaderName": "X-Tag", "SetHeaderValue": "x",
                                      "StopRuleProcessing": True})


def _lockdown_everything(data: dict[str, Any]) -> None:
    conn = next(c for c in data["InboundConnectors"] if "lock-down" in c["Name"])
    conn["AssociatedAcceptedDomains"] = []


def _renamed_certificate(data: dict[str, Any]) -> None:
    conn = next(c for c in data["InboundConnectors"] if c["Name"] == "mailroute gateway to EXO")
    conn["TlsSenderCertificateName"] = "gw2.example.org"


def _return_disabled(data: dict[str, Any]) -> None:
    conn = next(c for c in data["InboundConnectors"] if c["Name"] == "mailroute gateway to EXO")
    conn["Enabled"] = False


def _no_strip(data: dict[str, Any]) -> None:
    data["TransportRules"] = [r for r in data["TransportRules"]
                              if not r["Name"].startswith("mailroute 01")]


Plant = Callable[[dict[str, Any]], None]
# name, topology, plant, (change, section, property), lint code, sender, recipient, origin,
# expected status, gateway passes or None, reply status or None, bypass
CASES: list[tuple[str, str, Plant, tuple[Change, str, str], str, str, str, Origin, Status,
                  int | None, str | None, bool]] = [
    # 4.7 a: the routing rule's "processed" exception does not match the gateway's marker.
    # The returning message is routed again; the gateway's processed-message guard refuses
    # the second arrival in session (554 5.4.6) after one pass.
    ("exception", "t2", _wrong_tag, (Change.CHANGED, "TransportRules",
                                     "ExceptIfHeaderMatchesPatterns"),
     "L-MARKER-PATTERN", A, B, Origin.MAILBOX, Status.LOOP, 2, "5.4.6", False),
    # 4.7 b: the marker is consumed (rule 11) before the routing rule evaluates.
    ("consumed first", "t2", _consume_first, (Change.CHANGED, "TransportRules", "Priority"),
     "L-MARKER-CONSUMED-BEFORE-ROUTE", A, B, Origin.MAILBOX, Status.LOOP, 2, "5.4.6", False),
    # 4.7 c: InternalRelay domain without a connector whose MX points back to EOP: an
    # address unknown to the directory is sent to the MX, which is EOP again. In T2 every
    # pass routes to the gateway, whose processed-message guard refuses the repeat (5.4.6).
    ("internal relay", "t2", _internal_relay, (Change.CHANGED, "AcceptedDomains",
                                               "DomainType"),
     "L-INTERNALRELAY-LOOP", X, "nobody@example.net", Origin.INTERNET, Status.LOOP, 2,
     "5.4.6", False),
    # "the connector is not used": the routing rule in Audit mode -> mail never reaches the
    # gateway: BYPASS.
    ("audit", "t2", _audit, (Change.CHANGED, "TransportRules", "Mode"),
     "L-RULE-NOT-ENFORCED", A, B, Origin.MAILBOX, Status.DELIVERED, 0, None, True),
    # "the connector is not used": a rule above stops rule processing -> BYPASS.
    ("stop above", "t2", _stop_above, (Change.EXTRA, "TransportRules", ""),
     "L-SHADOWED-ROUTE", A, B, Origin.MAILBOX, Status.DELIVERED, 0, None, True),
    # 5.7.51 after locking down: the lock-down connector without AssociatedAcceptedDomains
    # also covers the onmicrosoft.com domain, whose MX stays at EOP.
    ("lock-down", "t3", _lockdown_everything, (Change.CHANGED, "InboundConnectors",
                                               "AssociatedAcceptedDomains"),
     "L-LOCKDOWN-ONMICROSOFT", X, "alice@examplenet.onmicrosoft.com", Origin.INTERNET,
     Status.REJECTED, 0, "5.7.51", False),
    # 5.7.64 / relay denied: the certificate was renewed under another name; the return
    # pass matches no connector and the external recipient cannot be relayed.
    ("certificate", "t2", _renamed_certificate, (Change.CHANGED, "InboundConnectors",
                                                 "TlsSenderCertificateName"),
     "L-CERT-DOMAIN-NOT-ACCEPTED", A, X, Origin.MAILBOX, Status.REJECTED, 1, "5.7.1", False),
    # Some tenants get OnPremises inbound connectors disabled: the same refusal.
    ("disabled", "t2", _return_disabled, (Change.CHANGED, "InboundConnectors", "Enabled"),
     "L-INBOUND-DISABLED", A, X, Origin.MAILBOX, Status.REJECTED, 1, "5.7.1", False),
    # Rule 01 missing: a forged marker from the internet skips the gateway (BYPASS).
    ("no strip", "t2", _no_strip, (Change.MISSING, "TransportRules", ""),
     "L-UNTRUSTED-STRIP-MISSING", X, B, Origin.INTERNET, Status.DELIVERED, 0, None, True),
]


@pytest.mark.parametrize(("name", "topo_name", "plant", "diff", "code", "sender", "rcpt",
                          "origin", "status", "passes", "reply", "bypass"), CASES,
                         ids=[c[0] for c in CASES])
def test_a_planted_misconfiguration_shows_in_diff_lint_and_simulation(
        name: str, topo_name: str, plant: Plant, diff: tuple[Change, str, str], code: str,
        sender: str, rcpt: str, origin: Origin, status: Status, passes: int | None,
        reply: str | None, bypass: bool) -> None:
    data = copy.deepcopy(export_tenant(deployed(topology(topo_name))))
    plant(data)
    topo, read = _read(topo_name, data)
    found = {(d.change, d.section, d.prop) for d in diff_tenants(deployed(topo), read)}
    assert diff in found
    assert code in {f.code for f in lint(topo, read)}
    if name == "lock-down":  # the mailbox also has its onmicrosoft.com address
        read = replace(read, directory=Directory(recipients=(
            Recipient(primary=A, proxies=("alice@examplenet.onmicrosoft.com",)),)))
    headers: tuple[tuple[str, str], ...] = ()
    if name == "no strip":
        headers = (("X-Mailroute-Mark", "v1.g7k2qd.forged"),)
    sim = simulate(Envelope(mail_from=sender, rcpt_to=(rcpt,)), message(sender, headers=headers),
                   topo, tenant=read, origin=origin, now=NOW)
    end = sim.outcome(rcpt)
    assert end.status is status
    if passes is not None:
        assert end.gateway_passes == passes
    if reply is not None:
        assert end.reply is not None
        assert end.reply.status == reply
    assert end.bypass is bypass
    # The same message through the plan as generated has none of this.
    planned = deployed(topo)
    if name == "lock-down":
        planned = replace(planned, directory=read.directory)
    clean = simulate(Envelope(mail_from=sender, rcpt_to=(rcpt,)),
                     message(sender, headers=headers), topo, tenant=planned,
                     origin=origin, now=NOW)
    assert (clean.outcome(rcpt).status, clean.outcome(rcpt).bypass) != (status, bypass)


def test_a_part_missing_from_the_export_is_taken_as_planned(tmp_path: Path) -> None:
    """Only Get-TransportRule was exported: the connectors are taken as planned, so the diff
    reports the one rule change and nothing for the parts not exported."""
    topo = topology("t2")
    rules = export_tenant(deployed(topo))["TransportRules"]
    _rule({"TransportRules": rules}, "mailroute 10")["State"] = "Disabled"
    (tmp_path / "Get-TransportRule.json").write_text(json.dumps(rules))
    read = tenant_from_export(topo, load_export(tmp_path))
    assert read.inbound_connectors == deployed(topo).inbound_connectors
    assert [(d.change, d.name, d.prop) for d in diff_tenants(deployed(topo), read)] == [
        (Change.CHANGED, "mailroute 10 route to gateway", "State")]


def test_cli_probe_shows_the_bypass_of_an_audit_mode_routing_rule(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rule 10 read back in Audit mode: the three samples (internal, outbound, inbound) all
    reach their recipient without a gateway pass: BYPASS each, exit 1."""
    config = str(EXAMPLES / FILES["t2"])
    data = export_tenant(deployed(topology("t2")))
    _audit(data)
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(data))
    args = ["exo-diff", "--config", config, "--export", str(path), "--probe", "--now", str(NOW)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert [line.rsplit(": ", 1)[1] for line in out.splitlines()
            if line.startswith("probe ")] == ["BYPASS", "BYPASS", "BYPASS"]
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps(export_tenant(deployed(topology("t2")))))
    assert main(["exo-diff", "--config", config, "--export", str(clean), "--probe",
                 "--now", str(NOW)]) == 0
    assert capsys.readouterr().out.count(": ok\n") == 3


def test_hostile_nesting_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="JSON"):
        load_export(path)
    nested: dict[str, Any] = {"Address": "x"}
    for _ in range(50):
        nested = {"Address": nested}
    with pytest.raises(ConfigError, match="DomainName"):
        parse_export({"AcceptedDomains": [{"DomainName": nested}]})


def _windows_powershell(data: dict[str, Any]) -> dict[str, Any]:
    """An export as Windows PowerShell 5.1 writes it: a one-object section as a bare object,
    empty arrays as ``{"value": [], "Count": 0}``, one-value arrays bare, ``DomainName`` as an
    SmtpDomain object, ``Comment`` empty as null, dates as ``/Date(ms)/``."""
    out: dict[str, Any] = {}
    for section, objects in data.items():
        if not isinstance(objects, list):
            out[section] = objects
            continue
        shaped = []
        for obj in objects:
            obj = dict(obj)
            for key, value in obj.items():
                if value == []:
                    obj[key] = {"value": [], "Count": 0}
                elif isinstance(value, list) and len(value) == 1:
                    obj[key] = value[0]
            if "DomainName" in obj:
                name = obj["DomainName"]
                obj["DomainName"] = {"SmtpDomain": {"Domain": name}, "Address": name,
                                     "IncludeSubDomains": False, "IsStar": False}
            obj["WhenChanged"] = "/Date(1764979200000)/"
            shaped.append(obj)
        out[section] = shaped[0] if len(shaped) == 1 else shaped
    return out


@pytest.mark.parametrize("name", ["t1", "t2", "t3"])
def test_windows_powershell_shapes_of_every_topology_diff_empty(name: str) -> None:
    planned = deployed(topology(name))
    _, read = _read(name, _windows_powershell(export_tenant(planned)))
    assert diff_tenants(planned, read) == ()
    assert read.transport_rules == planned.rules_by_priority
