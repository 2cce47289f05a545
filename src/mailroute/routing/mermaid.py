"""A Mermaid flowchart of a topology's mail flow, drawn from its plan.

Labels come from configuration (connector and rule names, domains); they are escaped for
Mermaid (``"`` becomes ``#quot;``, ``<``/``>`` become entities) and control characters are
refused, so a name can never add a node, an edge or markup to the diagram.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

from mailroute.routing.powershell import UnsafeValueError
from mailroute.routing.topology import TopologyKind

if TYPE_CHECKING:
    from mailroute.routing.plan import Plan
    from mailroute.routing.topology import Topology

__all__ = ["render_mermaid"]

_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "#": "#35;", "|": "#124;", "`": "#96;"}


def _label(*parts: str) -> str:
    out = []
    for part in parts:
        if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in part):
            raise UnsafeValueError("control character in a diagram label", key="topology")
        out.append("".join(_ESCAPES.get(ch, ch) for ch in part))
    return '"' + "<br/>".join(out) + '"'


def _rule(plan: Plan, number: str) -> str:
    return next((r.name for r in plan.rules if r.name.startswith(f"mailroute {number}")), "")


def render_mermaid(topology: Topology, plan: Plan) -> str:
    """The flowchart (``flowchart LR``) of ``plan`` for ``topology``."""
    gw = topology.gateway
    domains = ", ".join(topology.org_domains) or topology.tenant.name
    out_conn = plan.outbound_connectors[0].name if plan.outbound_connectors else ""
    lines = [
        "flowchart LR",
        f"  SND([{_label('internet senders')}])",
        f"  RCP([{_label('internet recipients')}])",
        f"  EXO[{_label('EOP / Exchange Online', topology.tenant.name)}]",
        f"  GW{{{{{_label('mailroute gateway', gw.hostname)}}}}}",
        f"  MBX[({_label('mailboxes', domains)})]",
        f"  MBX -->|{_label('submission')}| EXO",
    ]
    lock = next((c.name for c in plan.inbound_connectors if "lock-down" in c.name), "")
    if plan.topology is TopologyKind.T1:
        lines += [
            f"  SND -->|{_label('MX ' + domains)}| GW",
            f"  GW -->|{_label('marker minted', 'inbound connector ' + lock)}| EXO",
            f"  EXO -->|{_label(_rule(plan, '11'), 'local delivery')}| MBX",
            f"  EXO -->|{_label('outbound connector ' + out_conn, 'all external recipients')}| GW",
            f"  GW -->|{_label('recipient MX, marker removed', 'DKIM/ARC signed')}| RCP",
        ]
        return "\n".join(lines) + "\n"
    ret = next((c.name for c in plan.inbound_connectors if c.name not in (lock,)), "")
    entry = "GW" if plan.topology is TopologyKind.T3 else "EXO"
    route_rules = [r.name for r in plan.rules if r.actions.route_message_outbound_connector]
    lines += [f"  SND -->|{_label('MX ' + domains)}| {entry}"]
    if plan.topology is TopologyKind.T3:
        lines += [f"  GW -->|{_label('internet mail, marker minted', 'connector ' + ret)}| EXO"]
    lines += [
        f"  EXO -->|{_label(*route_rules, 'no valid marker', 'connector ' + out_conn)}| GW",
        f"  GW -->|{_label('processed, marker minted', 'connector ' + ret + ' (certificate)')}"
        "| EXO",
        f"  EXO -->|{_label(_rule(plan, '11'), 'local delivery')}| MBX",
        f"  EXO -->|{_label(_rule(plan, '11'), 'relay via MX')}| RCP",
    ]
    return "\n".join(lines) + "\n"
