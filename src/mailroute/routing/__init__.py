"""Exchange Online routing: the tenant model, one-hop decisions, the simulator, generators.

Everything here is pure policy (docs/routing/): only the loaders read files
(:func:`load_topology`, :func:`load_scenario` for scenario files, :func:`load_export` for a
tenant read back from ``Get-*`` JSON). Typical use::

    topology = load_topology("t2.toml")
    tenant = deployed(topology)                       # the tenant with mailroute installed
    result = simulate(envelope, message, topology, tenant=tenant, origin=Origin.MAILBOX)
    findings = lint(topology)                         # docs/routing/lint.md
    script, findings = exo_config(topology)           # lint, then the PowerShell
    actual = tenant_from_export(topology, load_export("tenant.json"))
    differences = diff_tenants(tenant, actual)        # docs/routing/exo-diff.md
"""

from __future__ import annotations

from mailroute.routing.decide import Route, RouteKind, TraceStep
from mailroute.routing.diff import Change, Difference, diff_tenants
from mailroute.routing.exo import Attribution, ExoCopy, ExoDecision, Generated, decide_exo
from mailroute.routing.exoconfig import LintRefused, exo_config
from mailroute.routing.export import export_tenant
from mailroute.routing.facts import message_facts
from mailroute.routing.gateway import (
    Flow,
    GatewayDecision,
    GatewayPolicy,
    GatewaySplit,
    NextHopChoice,
    decide_gateway,
    gateway_next_hop,
    gateway_settings,
)
from mailroute.routing.hop import Connection, Hop, MessageFacts, MessageFlag, Source
from mailroute.routing.lint import Finding, Severity, lint
from mailroute.routing.load import load_topology, parse_topology
from mailroute.routing.markers import (
    MarkerCodec,
    RingMarkers,
    marker_exception_pattern,
    simulation_markers,
)
from mailroute.routing.mermaid import render_mermaid
from mailroute.routing.model import Tenant
from mailroute.routing.plan import Plan, build_plan, deployed
from mailroute.routing.powershell import Script, UnsafeValueError, ps_quote, render_powershell
from mailroute.routing.readback import load_export, parse_export, tenant_from_export
from mailroute.routing.render import render_text, route_object, simulation_object
from mailroute.routing.scenario import Scenario
from mailroute.routing.scenario_load import load_scenario
from mailroute.routing.simulate import JourneyOutcome, Origin, SimStep, Simulation, Status, simulate
from mailroute.routing.topology import (
    ExoConfigOptions,
    GatewayConfig,
    MarkerConfig,
    Topology,
    TopologyKind,
)

__all__ = [
    "Attribution",
    "Change",
    "Connection",
    "Difference",
    "ExoConfigOptions",
    "ExoCopy",
    "ExoDecision",
    "Finding",
    "Flow",
    "GatewayConfig",
    "GatewayDecision",
    "GatewayPolicy",
    "GatewaySplit",
    "Generated",
    "Hop",
    "JourneyOutcome",
    "LintRefused",
    "MarkerCodec",
    "MarkerConfig",
    "MessageFacts",
    "MessageFlag",
    "NextHopChoice",
    "Origin",
    "Plan",
    "RingMarkers",
    "Route",
    "RouteKind",
    "Scenario",
    "Script",
    "Severity",
    "SimStep",
    "Simulation",
    "Source",
    "Status",
    "Tenant",
    "Topology",
    "TopologyKind",
    "TraceStep",
    "UnsafeValueError",
    "build_plan",
    "decide_exo",
    "decide_gateway",
    "deployed",
    "diff_tenants",
    "exo_config",
    "export_tenant",
    "gateway_next_hop",
    "gateway_settings",
    "lint",
    "load_export",
    "load_scenario",
    "load_topology",
    "marker_exception_pattern",
    "message_facts",
    "parse_export",
    "parse_topology",
    "ps_quote",
    "render_mermaid",
    "render_powershell",
    "render_text",
    "route_object",
    "simulate",
    "simulation_markers",
    "simulation_object",
    "tenant_from_export",
]
