"""A simulation as text an administrator reads like a message trace, and as JSON values.

``render_text`` prints one block per node visit (the decision's trace steps, indented) and
then one line per recipient outcome. ``route_object`` and ``simulation_object`` build the
``--json`` shapes of CLI.md (``route`` and ``simulate``), with extra keys only added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailroute.routing.decide import Route, RouteKind
from mailroute.routing.steps import explain as explain_step

if TYPE_CHECKING:
    from mailroute.routing.decide import TraceStep
    from mailroute.routing.simulate import JourneyOutcome, Simulation

__all__ = ["explain_line", "render_text", "route_object", "simulation_object"]

_ACTIONS = {RouteKind.LOCAL: "deliver", RouteKind.FORWARD: "forward",
            RouteKind.CONNECTOR: "relay", RouteKind.MX: "relay", RouteKind.EXO: "relay",
            RouteKind.NDR: "ndr", RouteKind.REJECT: "reject", RouteKind.DROP: "drop",
            RouteKind.QUARANTINE: "quarantine", RouteKind.AMBIGUOUS: "tempfail"}


def _reason(trace: tuple[TraceStep, ...], routes: tuple[Route, ...]) -> str:
    replies = [str(r.reply) for r in routes if r.reply is not None]
    if replies:
        return replies[0]
    return trace[-1].detail if trace else ""


def _trace_object(t: TraceStep, explain: bool) -> dict[str, object]:
    obj: dict[str, object] = {"step": t.step, "detail": t.detail, "rule": t.rule,
                              "connector": t.connector}
    if explain:
        obj["explanation"] = explain_step(t.step)
    return obj


def route_object(routes: tuple[Route, ...], rules: tuple[str, ...],
                 trace: tuple[TraceStep, ...], *, explain: bool = False) -> dict[str, object]:
    """CLI.md's route shape: ``action``, ``next_hop``, ``connector``, ``rules``, ``reason``.

    With several recipients the top-level fields describe the first; ``recipients`` lists
    every recipient's own route (an addition to the pinned shape). With ``explain`` every
    trace entry also carries ``explanation``, the step code's sentence
    (:data:`~mailroute.routing.steps.STEP_TEXTS`).
    """
    first = routes[0] if routes else Route("", RouteKind.REJECT)
    actions = {_ACTIONS[r.kind] for r in routes}
    return {
        "action": _ACTIONS[first.kind] if len(actions) <= 1 else "fork",
        "next_hop": first.next_hop,
        "connector": first.connector,
        "rules": list(rules),
        "reason": _reason(trace, routes),
        "recipients": [{"recipient": r.recipient, "action": _ACTIONS[r.kind],
                        "next_hop": r.next_hop, "connector": r.connector,
                        "reply": str(r.reply) if r.reply else None} for r in routes],
        "trace": [_trace_object(t, explain) for t in trace],
    }


def _outcome_object(o: JourneyOutcome) -> dict[str, object]:
    return {"recipient": o.recipient, "address": o.address, "kind": o.kind,
            "status": str(o.status), "final": o.final, "gateway_passes": o.gateway_passes,
            "exo_passes": o.exo_passes, "service_passes": o.service_passes,
            "flows": list(o.flows), "flags": sorted(o.flags), "bypass": o.bypass,
            "marker_at_delivery": o.marker_at_delivery, "disclaimers": o.disclaimers,
            "reply": str(o.reply) if o.reply else None}


def simulation_object(sim: Simulation, *, explain: bool = False) -> dict[str, object]:
    """CLI.md's simulate shape: ``hops`` (route objects with ``at``), ``delivered_to``, ``loop``.

    ``delivered_to`` names the delivery nodes of the original message, comma-separated, or
    is ``null`` when nothing was delivered. ``bypass`` and ``outcomes`` are additions;
    ``explain`` as for :func:`route_object`.
    """
    hops = []
    for step in sim.steps:
        hop = {"at": step.at, "kind": step.kind, **route_object(step.routes, step.rules,
                                                               step.trace, explain=explain)}
        hops.append(hop)
    finals = sorted({o.final for o in sim.outcomes
                     if o.kind == "message" and str(o.status) == "delivered"})
    return {"hops": hops, "delivered_to": ", ".join(finals) if finals else None,
            "loop": sim.loop, "bypass": sim.bypass,
            "outcomes": [_outcome_object(o) for o in sim.outcomes]}


def explain_line(t: TraceStep, indent: str) -> str:
    """The line ``--explain`` prints under a trace step: what its code means."""
    return f"{indent}    = {explain_step(t.step)}\n"


def render_text(sim: Simulation, *, explain: bool = False) -> str:
    """The simulation as a readable message trace (``explain``: each step's meaning too)."""
    env = sim.envelope
    out = [f"message from <{env.mail_from}> to {', '.join(env.rcpt_to)} "
           f"(origin: {sim.origin})\n"]
    for step in sim.steps:
        who = ", ".join(step.recipients)
        what = "" if step.kind == "message" else f" [{step.kind}]"
        out.append(f"\n#{step.index + 1} {step.at}{what}: <{step.mail_from}> -> {who}\n")
        for t in step.trace:
            about = f" [{t.rule or t.connector}]" if (t.rule or t.connector) else ""
            out.append(f"    {t.step:<4}{t.detail}{about}\n")
            if explain:
                out.append(explain_line(t, "    "))
    out.append("\noutcome:\n")
    for o in sim.outcomes:
        flags = []
        if o.bypass:
            flags.append("BYPASS")
        if o.marker_at_delivery:
            flags.append("MARKER LEAKED")
        if o.disclaimers > 1:
            flags.append(f"{o.disclaimers} DISCLAIMERS")
        reply = f" ({o.reply})" if o.reply else ""
        name = o.recipient if o.address == o.recipient else f"{o.recipient} -> {o.address}"
        mark = f"  {' '.join(flags)}" if flags else ""
        out.append(f"  {name}: {o.status} at {o.final}{reply}; gateway x{o.gateway_passes}, "
                   f"EXO x{o.exo_passes}"
                   + (f", services x{o.service_passes}" if o.service_passes else "")
                   + f"{mark}\n")
    verdict = "LOOP" if sim.loop else "BYPASS" if sim.bypass else "ok"
    out.append(f"verdict: {verdict}\n")
    return "".join(out)
