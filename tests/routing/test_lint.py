"""Section 4.6 lint: the examples are clean, each seeded fault is named, errors refuse."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mailroute.item import Envelope
from mailroute.routing import (
    LintRefused,
    Origin,
    Severity,
    Simulation,
    Tenant,
    Topology,
    exo_config,
    lint,
    simulate,
)
from mailroute.routing.model import (
    AcceptedDomain,
    DomainType,
    InboundConnector,
    OutboundConnector,
    RuleMode,
)
from tests.routing.support import FILES, NOW, change_rule, installed, message, topology


def _codes(topo: Topology, tenant: Tenant | None = None) -> dict[str, Severity]:
    return {f.code: f.severity for f in lint(topo, tenant)}


@pytest.mark.parametrize("name", sorted(FILES))
def test_examples_have_no_errors_or_warnings(name: str) -> None:
    """Clean but for the hint and the example's own placeholder probe address."""
    findings = lint(topology(name))
    assert [(f.code, f.severity) for f in findings] == [
        ("L-DIRECT-SEND", Severity.INFO), ("L-VERIFY-PLACEHOLDER", Severity.WARNING)]
    real = replace(topology(name), exo_config=replace(topology(name).exo_config,
                                                      probe_recipient="probe@contoso.com"))
    assert [f.code for f in lint(real)] == ["L-DIRECT-SEND"]


@pytest.mark.parametrize("probe", ["", "probe@example.com", "x@sub.example.org",
                                   "p@partner.example", "p@host.invalid", "p@a.test"])
def test_placeholder_probe_is_flagged_in_lint_and_in_the_verify_script(probe: str) -> None:
    topo = topology("t2")
    topo = replace(topo, exo_config=replace(topo.exo_config, probe_recipient=probe))
    assert _codes(topo)["L-VERIFY-PLACEHOLDER"] is Severity.WARNING
    text, findings = exo_config(topo, script="verify")
    assert "L-VERIFY-PLACEHOLDER" in {f.code for f in findings}
    lines = text.splitlines()
    check = next(i for i, line in enumerate(lines) if line.startswith("Validate-OutboundConnector"))
    assert lines[check - 1].startswith("# PLACEHOLDER: ")
    # the Test-Message sample names no address that could be mistaken for a real one
    sample = next(line for line in lines if line.startswith("# Test-Message "))
    assert "@" not in sample
    assert lines[lines.index(sample) - 1].startswith("# PLACEHOLDER addresses")


def test_real_probe_is_not_flagged() -> None:
    topo = topology("t2")
    topo = replace(topo, exo_config=replace(topo.exo_config, probe_recipient="probe@contoso.com"))
    assert "L-VERIFY-PLACEHOLDER" not in _codes(topo)
    text, _ = exo_config(topo, script="verify")
    assert "# PLACEHOLDER: " not in text
    assert "-Recipients 'probe@contoso.com'" in text


def _with(name: str, **tenant_changes: Any) -> tuple[Topology, Tenant]:
    topo, tenant = installed(name)
    return topo, replace(tenant, **tenant_changes)


def test_certificate_domain_must_be_accepted() -> None:
    topo, tenant = installed("t2")
    domains = tuple(d for d in tenant.accepted_domains if d.domain != "mailroute.example.net")
    assert _codes(topo, replace(tenant, accepted_domains=domains))[
        "L-CERT-DOMAIN-NOT-ACCEPTED"] is Severity.ERROR
    relay = AcceptedDomain(domain="example.net", type=DomainType.INTERNAL_RELAY,
                           match_subdomains=True)
    covered = (relay, *(d for d in domains if d.domain != "example.net"))
    assert _codes(topo, replace(tenant, accepted_domains=covered))[
        "L-CERT-DOMAIN-NOT-ACCEPTED"] is Severity.WARNING


def test_lockdown_without_associated_domains_rejects_onmicrosoft_mail() -> None:
    topo, tenant = installed("t3")
    loose = tuple(replace(c, associated_accepted_domains=()) if "lock-down" in c.name else c
                  for c in tenant.inbound_connectors)
    assert _codes(topo, replace(tenant, inbound_connectors=loose))[
        "L-LOCKDOWN-ONMICROSOFT"] is Severity.ERROR


def test_address_formats() -> None:
    bad_in = InboundConnector(name="partner", sender_ip_addresses=("2001:db8::1", "10.0.0.0/8"),
                              ef_skip_ips=("192.168.1.1",))
    bad_out = OutboundConnector(name="port", recipient_domains=("x.example",),
                                use_mx_record=False, smart_hosts=("relay.example:587",))
    topo, tenant = installed("t2")
    findings = lint(topo, replace(tenant, inbound_connectors=(*tenant.inbound_connectors, bad_in),
                                  outbound_connectors=(*tenant.outbound_connectors, bad_out)))
    messages = [f.message for f in findings if f.code == "L-ADDR-FORMAT"]
    assert len(messages) == 4
    assert any("IPv6" in m for m in messages)
    assert any("wider than /24" in m for m in messages)


@pytest.mark.parametrize(("spec", "why"), [
    ("0.0.0.0/0", "wider than /24"), ("203.0.0.0/8", "wider than /24"),
    ("40.107.0.0/24", "Exchange Online's own ranges"), ("40.107.5.5", "Exchange Online's own"),
    ("10.0.0.5", "not a public address"), ("192.168.1.0/24", "not a public address"),
    ("fd00::1", "not a public address"), ("not-an-ip", "not an address")])
def test_egress_addresses_rule_01_cannot_trust_are_errors(spec: str, why: str) -> None:
    """Rule 01 keeps markers from these addresses: everyone's, or nobody's."""
    topo = topology("t2")
    topo = replace(topo, gateway=replace(topo.gateway, egress_ips=(spec,)))
    found = [f for f in lint(topo) if f.code == "L-EGRESS-IPS"]
    assert [(f.severity, why in f.message) for f in found] == [(Severity.ERROR, True)]
    with pytest.raises(LintRefused):
        exo_config(topo)


@pytest.mark.parametrize("spec", ["203.0.113.10", "198.51.100.0/24", "2001:db8:1::/48"])
def test_a_public_egress_address_or_narrow_range_is_accepted(spec: str) -> None:
    topo = topology("t2")
    topo = replace(topo, gateway=replace(topo.gateway, egress_ips=(spec,)))
    assert [f for f in lint(topo) if f.code == "L-EGRESS-IPS"] == []


def test_mx_must_fit_the_topology() -> None:
    topo, tenant = installed("t3")
    assert _codes(topo, replace(tenant, mx=(("example.net", "eop"),)))["L-MX"] is Severity.ERROR


def test_csme_needs_the_gateway_to_strip_forged_headers() -> None:
    t2 = topology("t2")
    csme = replace(t2, exo_config=replace(t2.exo_config, cloud_services_mail_enabled=True),
                   gateway=replace(t2.gateway, strip_ms_headers=False))
    assert _codes(csme)["L-CSME-NEEDS-STRIP"] is Severity.ERROR
    ok = replace(csme, gateway=replace(csme.gateway, strip_ms_headers=True))
    assert "L-CSME-NEEDS-STRIP" not in _codes(ok)


def test_identity_must_be_a_certificate_name() -> None:
    t2 = topology("t2")
    wrong = replace(t2, gateway=replace(t2.gateway, certificate_names=("other.example.net",)))
    assert _codes(wrong)["L-TLS-NAME"] is Severity.ERROR


def test_without_static_egress_ip_rule_01_cannot_be_built() -> None:
    t2 = topology("t2")
    floating = replace(t2, gateway=replace(t2.gateway, egress_ips=()))
    assert _codes(floating)["L-UNTRUSTED-STRIP-MISSING"] is Severity.ERROR
    accepted = replace(floating, exo_config=replace(floating.exo_config,
                                                    accept_forged_marker_risk=True))
    assert "L-UNTRUSTED-STRIP-MISSING" not in _codes(accepted)


def test_generation_is_refused_on_lint_errors() -> None:
    t2 = topology("t2")
    floating = replace(t2, gateway=replace(t2.gateway, egress_ips=()))
    with pytest.raises(LintRefused) as refused:
        exo_config(floating, source="t2.toml")
    assert refused.value.findings[0].severity is Severity.ERROR
    assert "t2.toml" in str(refused.value)
    assert "L-UNTRUSTED-STRIP-MISSING" in str(refused.value)


def _relay_domain(tenant: Tenant, domain: str, mx: str) -> Tenant:
    return replace(tenant, accepted_domains=(
        *tenant.accepted_domains, AcceptedDomain(domain=domain, type=DomainType.INTERNAL_RELAY)),
        mx=(*tenant.mx, (domain, mx)))


def _simulate_to(topo: Topology, tenant: Tenant, rcpt: str) -> Simulation:
    return simulate(Envelope(mail_from="alice@example.net", rcpt_to=(rcpt,)), message(), topo,
                    tenant=tenant, origin=Origin.MAILBOX, now=NOW)


def test_internal_relay_domain_served_by_the_star_connector_to_the_gateway_loops() -> None:
    """T1: the ``*`` connector catches an InternalRelay domain of the organisation; the
    gateway hands org-domain mail back to Exchange Online (G8), which picks ``*`` again."""
    topo, tenant = installed("t1")
    looped = _relay_domain(tenant, "legacy.example.net", "onprem.legacy.example")
    found = [f for f in lint(topo, looped) if f.code == "L-INTERNALRELAY-LOOP"]
    assert [(f.severity, f.subject) for f in found] == [(Severity.ERROR, "legacy.example.net")]
    assert "'mailroute EXO to gateway (all external)'" in found[0].message
    assert _simulate_to(topo, looped, "u@legacy.example.net").loop  # the model agrees
    # a relay domain outside the organisation whose MX leads away is relayed, not looped
    away = _relay_domain(tenant, "legacy.example", "onprem.legacy.example")
    assert "L-INTERNALRELAY-LOOP" not in _codes(topo, away)
    sim = _simulate_to(topo, away, "u@legacy.example")
    assert not sim.loop
    assert sim.outcome("u@legacy.example").final == "internet:onprem.legacy.example"


def test_audit_mode_routing_rule_is_an_error_whatever_its_name() -> None:
    """A rule in Audit mode records "would apply" and does nothing (note's rule loop): a
    rule that routes to the gateway in Audit mode lets mail skip the gateway."""
    topo, tenant = installed("t2")
    renamed = change_rule(tenant, "mailroute 10", name="corp route to scanner")
    assert "L-RULE-NOT-ENFORCED" not in _codes(topo, renamed)
    audit = change_rule(renamed, "corp route", mode=RuleMode.AUDIT)
    found = [f for f in lint(topo, audit) if f.code == "L-RULE-NOT-ENFORCED"]
    assert [(f.severity, f.subject) for f in found] == [(Severity.ERROR,
                                                        "corp route to scanner")]
    assert "routes to the gateway" in found[0].message
    assert _simulate_to(topo, audit, "x@partner.example").bypass  # the model agrees
