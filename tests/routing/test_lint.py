"""Section 4.6 lint: the examples are clean, each seeded fault is named, errors refuse."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mailroute.routing import LintRefused, Severity, Tenant, Topology, exo_config, lint
from mailroute.routing.model import (
    AcceptedDomain,
    DomainType,
    InboundConnector,
    OutboundConnector,
)
from tests.routing.support import FILES, installed, topology


def _codes(topo: Topology, tenant: Tenant | None = None) -> dict[str, Severity]:
    return {f.code: f.severity for f in lint(topo, tenant)}


@pytest.mark.parametrize("name", sorted(FILES))
def test_examples_have_no_errors_or_warnings(name: str) -> None:
    findings = lint(topology(name))
    assert [f.code for f in findings] == ["L-DIRECT-SEND"]
    assert findings[0].severity is Severity.INFO


def _with(name: str, **tenant_changes: object) -> tuple[Topology, Tenant]:
    topo, tenant = installed(name)
    return topo, replace(tenant, **tenant_changes)  # type: ignore[arg-type]


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
