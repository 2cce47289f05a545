"""Model fixes of issue 18: copies Exchange makes, and who sees a loop first.

Each test derives its expected outcome from the procedure the simulator implements
(docs/routing/simulator.md, docs/routing/steps.md) step by step.
"""

from __future__ import annotations

from dataclasses import replace

from mailroute.item import Envelope
from mailroute.routing import Origin, Simulation, Status, Tenant, Topology, simulate
from mailroute.routing.model import Actions, MessageType, Predicates, TransportRule
from tests.routing.support import NOW, change_rule, insert_before, installed, message

A, B, X = "alice@example.net", "bob@example.net", "x@partner.example"
CAROL, CAROL_PRIVATE = "carol@example.net", "carol.private@partner.example"


def _run(topo: Topology, tenant: Tenant, sender: str, rcpts: tuple[str, ...],
         origin: Origin) -> Simulation:
    return simulate(Envelope(mail_from=sender, rcpt_to=rcpts), message(sender), topo,
                    tenant=tenant, origin=origin, now=NOW)


def test_forwarded_copy_continues_the_pass_counts_so_the_second_gateway_lap_shows() -> None:
    """T2, internet -> carol, whose mailbox forwards to carol.private@partner.example.

    1. EXO pass 1: Incoming for carol; rule 10 routes it to the gateway (gateway pass 1,
       inbound); EXO pass 2: the marker exception lets it through, carol's mailbox gets it.
    2. Delivery makes the forward: a new submission of the same message (RES/X), which
       rule 10 routes to the gateway again (gateway pass 2, outbound: carol -> partner),
       then EXO pass 4 sends it to partner.example's MX.
    The forwarded copy is the same message on its second gateway lap: 2 gateway passes, 4
    EXO passes, flows inbound then outbound. It is no BYPASS: its own leg passed once.
    """
    topo, tenant = installed("t2")
    sim = _run(topo, tenant, X, (CAROL,), Origin.INTERNET)
    mailbox = sim.outcome(CAROL)
    assert (mailbox.status, mailbox.gateway_passes, mailbox.exo_passes) == (
        Status.DELIVERED, 1, 2)
    forward = sim.outcome(f"forward:{CAROL_PRIVATE}", kind="forward")
    assert forward.status is Status.DELIVERED
    assert forward.final == "internet:partner.example"
    assert (forward.gateway_passes, forward.exo_passes) == (2, 4)
    assert forward.flows == ("inbound", "outbound")
    assert not forward.bypass
    assert [s.at for s in sim.steps] == ["EXO pass 1", "gateway pass 1", "EXO pass 2",
                                         "EXO pass 3", "gateway pass 2", "EXO pass 4"]


def test_a_forward_that_skips_the_gateway_is_still_a_bypass() -> None:
    """T2 with a rule above rule 10 that stops rule processing for auto-forwards.

    Internet -> carol: the inbound journey passes the gateway once (EXO pass 1, gateway
    pass 1, EXO pass 2, carol's mailbox). The forward is a new submission; the inserted
    rule stops it before rule 10, so EXO sends it straight to partner.example's MX. The
    copy's count continues at 1 gateway pass, but its own leg (carol -> outside, which
    all-mail mode wants processed) had none: BYPASS, judged on the copy's own leg.
    """
    topo, tenant = installed("t2")
    skip = TransportRule(name="corp forwards skip", conditions=Predicates(
        message_type_matches=MessageType.AUTO_FORWARD), stop_rule_processing=True)
    sim = _run(topo, insert_before(tenant, "mailroute 10", skip), X, (CAROL,),
               Origin.INTERNET)
    forward = sim.outcome(f"forward:{CAROL_PRIVATE}", kind="forward")
    assert forward.status is Status.DELIVERED
    assert forward.final == "internet:partner.example"
    assert forward.gateway_passes == 1
    assert forward.bypass
    assert not sim.outcome(CAROL).bypass


def test_group_fanout_is_made_once_by_the_pass_that_delivers_to_the_group() -> None:
    """T2, alice -> project@ (a Microsoft 365 group of alice and bob).

    EXO pass 1 resolves project@ to the group mailbox (RES) and rule 10 routes it to the
    gateway: the group mailbox has not received anything yet, so no member copy exists.
    Gateway pass 1, then EXO pass 2 delivers to the group mailbox; that delivery makes the
    members' copies, one new submission (EXO pass 3, bypassing the gateway by rule 03).
    So each member gets exactly one copy, made after the gateway pass and carrying it.
    """
    topo, tenant = installed("t2")
    sim = _run(topo, tenant, A, ("project@example.net",), Origin.MAILBOX)
    fanout = [o for o in sim.outcomes if o.kind == "group fan-out"]
    assert sorted(o.address for o in fanout) == [A, B]
    assert all(o.status is Status.DELIVERED and o.gateway_passes == 1 and not o.bypass
               for o in fanout)
    assert [(s.at, s.kind) for s in sim.steps] == [
        ("EXO pass 1", "message"), ("gateway pass 1", "message"), ("EXO pass 2", "message"),
        ("EXO pass 3", "group fan-out")]


def test_the_gateway_guard_answers_a_repeated_arrival_before_the_state_check() -> None:
    """T2 with rule 10's marker exception removed: alice -> bob loops.

    EXO pass 1 routes to the gateway (gateway pass 1, processed and recorded, G7); EXO
    pass 2 routes it to the gateway again, as nothing excepts marked mail. At gateway pass
    2 the arrival repeats a state, but a real deployment has no global observer: the
    gateway's processed-message store (G2: same Message-ID, recipients and direction seen
    processed_limit = 1 time) refuses it with 554 5.4.6. EXO turns the refusal into an NDR
    to alice, which the same broken rule sends round again until the gateway refuses it
    too (a null-sender NDR is never answered with another).
    """
    topo, tenant = installed("t2")
    broken = change_rule(tenant, "mailroute 10", exceptions=Predicates())
    sim = _run(topo, broken, A, (B,), Origin.MAILBOX)
    bob = sim.outcome(B)
    assert bob.status is Status.LOOP
    assert bob.gateway_passes == 2
    assert bob.reply is not None
    assert (bob.reply.code, bob.reply.status) == (554, "5.4.6")
    gateway_two = sim.steps[bob.steps[-1]]
    assert gateway_two.at == "gateway pass 2"
    assert any(t.step == "G2" for t in gateway_two.trace)
    ndr = sim.outcome(f"ndr:{A}", kind="ndr")
    assert ndr.reply is not None
    assert ndr.reply.status == "5.4.6"


def test_without_the_gateway_guards_the_state_repeat_still_ends_the_loop() -> None:
    """T2, processed-message guard off (processed_limit = 0) and a rule above rule 10 that
    removes the marker: alice -> bob loops.

    EXO pass 1 routes to the gateway; gateway pass 1 mints a marker; EXO pass 2 removes it
    before rule 10, which routes the message to the gateway again. Gateway pass 2 has no
    guard that fires: no marker (G3), the processed store is off (G2), few Received
    fields. It would hand the message on exactly as the first time, so only now does the
    simulator declare the repeated state a loop (554 5.4.14 state repeated), at the gateway.
    """
    topo, tenant = installed("t2")
    topo = replace(topo, gateway=replace(topo.gateway, processed_limit=0))
    cleanup = TransportRule(name="vendor header cleanup",
                            actions=Actions(remove_header="X-Mailroute-Mark"))
    sim = _run(topo, insert_before(tenant, "mailroute 10", cleanup), A, (B,), Origin.MAILBOX)
    bob = sim.outcome(B)
    assert bob.status is Status.LOOP
    assert bob.reply is not None
    assert bob.reply.status == "5.4.14"
    last = sim.steps[bob.steps[-1]]
    assert last.at == "gateway pass 2"
    assert not any(t.step == "G2" for t in last.trace)
