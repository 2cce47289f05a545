"""Shared builders for the routing tests: example topologies, messages, markers, mutations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from mailroute.routing import (
    Connection,
    MessageFacts,
    MessageFlag,
    RingMarkers,
    Source,
    Tenant,
    Topology,
    deployed,
    load_topology,
    simulation_markers,
)
from mailroute.routing.model import TransportRule
from mailroute.routing.simulate import EXO_EGRESS_IP, EXO_TLS_NAME

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "topologies"
FILES = {"t1": "t1-in-front.toml", "t2": "t2-beside-mx-eop.toml",
         "t3": "t3-beside-mx-gateway.toml"}
NOW = 1_800_000_000
MESSAGE_ID = "<m1@example.net>"
TENANT_ID = "6f1c2a9e-3b7d-4c1e-9a55-0d2f1e8b7c44"


def topology(name: str) -> Topology:
    """One of the three example topologies (``t1``, ``t2``, ``t3``)."""
    return load_topology(EXAMPLES / FILES[name])


def codec(tag: str = "g7k2qd") -> RingMarkers:
    """The codec the simulator uses by default for the example tenant."""
    return simulation_markers(tag, TENANT_ID)


def message(sender: str = "alice@example.net", *, headers: tuple[tuple[str, str], ...] = (),
            flags: frozenset[MessageFlag] = frozenset(),
            message_id: str = MESSAGE_ID) -> MessageFacts:
    """A message from ``sender`` with extra headers and flags."""
    base = (("From", sender), ("Subject", "test"), ("Message-ID", message_id))
    return MessageFacts(headers=(*base, *headers), message_id=message_id,
                        from_addrs=(sender,) if sender else (), flags=flags)


def marker(kind: str, sender: str = "alice@example.net") -> str:
    """A marker value: valid, stale, forged, foreign or replayed (for :func:`message`)."""
    facts = message(sender)
    if kind == "valid":
        return codec().mint(facts, "o", NOW)
    if kind == "stale":
        return codec().mint(facts, "o", NOW - 7200)
    if kind == "forged":
        token = codec().mint(facts, "o", NOW)
        return token[:-1] + ("A" if token[-1] != "A" else "B")
    if kind == "foreign":
        return codec("abcdef").mint(facts, "o", NOW)
    if kind == "replayed":
        return codec().mint(message(sender, message_id="<other@example.net>"), "o", NOW)
    raise ValueError(kind)


def exo_connection() -> Connection:
    """A connection from Exchange Online to the gateway (add the CrossTenant-Id header too)."""
    return Connection(source=Source.EXO, client_ip=EXO_EGRESS_IP, tls=True,
                      peer_cert_names=(EXO_TLS_NAME,))


def from_exo_headers() -> tuple[tuple[str, str], ...]:
    """The header EXO stamps on egress that G1 checks."""
    return (("X-MS-Exchange-CrossTenant-Id", TENANT_ID),)


def rules_with(tenant: Tenant, rules: list[TransportRule]) -> Tenant:
    """``tenant`` with ``rules`` renumbered 0..n in the given order."""
    return replace(tenant, transport_rules=tuple(
        replace(r, priority=i) for i, r in enumerate(rules)))


def change_rule(tenant: Tenant, prefix: str, **changes: Any) -> Tenant:
    """``tenant`` with the rule whose name starts with ``prefix`` changed."""
    rules = [replace(r, **changes) if r.name.startswith(prefix) else r
             for r in tenant.rules_by_priority]
    return rules_with(tenant, rules)


def drop_rule(tenant: Tenant, prefix: str) -> Tenant:
    """``tenant`` without the rules whose names start with ``prefix``."""
    return rules_with(tenant, [r for r in tenant.rules_by_priority
                               if not r.name.startswith(prefix)])


def insert_before(tenant: Tenant, prefix: str, rule: TransportRule) -> Tenant:
    """``tenant`` with ``rule`` just above the rule whose name starts with ``prefix``."""
    rules: list[TransportRule] = []
    for r in tenant.rules_by_priority:
        if r.name.startswith(prefix):
            rules.append(rule)
        rules.append(r)
    return rules_with(tenant, rules)


def installed(name: str) -> tuple[Topology, Tenant]:
    """An example topology and its deployed tenant."""
    topo = topology(name)
    return topo, deployed(topo)
