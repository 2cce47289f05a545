"""``mailroute route``, ``simulate`` and ``exo-config``: Exchange Online routing (CLI.md).

``route`` decides one hop (EXO or the gateway), ``simulate`` follows the message until every
recipient's journey ends, and ``exo-config`` prints the tenant configuration after the lint.
The message is described by flags (``--header``, ``--flag``), never read from standard input.

Exit codes: ``route`` 0, or 69 when every recipient is refused (the first line on standard
error starts with the enhanced status code); ``simulate`` 0, or 1 when it finds a loop or a
bypass; ``exo-config`` 0, or 78 when the lint reports an error; 78 for any configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from mailroute.commands.common import (
    add_envelope_arguments,
    envelope_from_args,
    read_message,
    report_config_error,
    unix_time,
    write_stdout_text,
)
from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode
from mailroute.item import Direction, Envelope
from mailroute.routing import (
    Connection,
    Hop,
    LintRefused,
    MessageFacts,
    MessageFlag,
    Origin,
    RouteKind,
    Source,
    Topology,
    decide_exo,
    decide_gateway,
    deployed,
    exo_config,
    gateway_settings,
    load_topology,
    render_text,
    route_object,
    simulation_markers,
    simulation_object,
)
from mailroute.routing import simulate as run_simulation
from mailroute.routing.exoconfig import SCRIPTS
from mailroute.routing.facts import message_facts
from mailroute.routing.match import domain_of
from mailroute.routing.model import Tenant
from mailroute.routing.readback import load_export, tenant_from_export
from mailroute.routing.render import explain_line
from mailroute.routing.scenario_load import load_scenario
from mailroute.routing.simulate import Simulation

__all__ = ["register"]

_NOW_DEFAULT = "the current time"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``route``, ``simulate`` and ``exo-config``."""
    route = subparsers.add_parser(
        "route", help="the routing decision for one message at one hop",
        description="Decide one hop (Exchange Online or the gateway) for the message described "
                    "by the flags. Exit codes: 0 routed, 69 every recipient refused, 78 bad "
                    "topology.")
    _common(route)
    route.add_argument("--at", choices=["exo", "gateway"], default="exo",
                       help="the node that decides (default: exo)")
    route.add_argument("--source", choices=[s.value for s in Source],
                       help="who connects (default: derived from --direction, the TLS name "
                            "and the sender)")
    route.set_defaults(handler=run_route)
    sim = subparsers.add_parser(
        "simulate", help="every hop until final delivery, or the loop it finds",
        description="Simulate the message hop by hop through the topology with mailroute's "
                    "configuration installed. Exit codes: 0 no loop and no bypass, 1 a loop, "
                    "hop limit or bypass was found, 78 bad topology.")
    _common(sim)
    sim.add_argument("--origin", choices=[o.value for o in Origin],
                     help="where the message starts (default: mailbox for senders in accepted "
                          "domains, else internet)")
    sim.add_argument("--scenario", metavar="SCENARIO.toml",
                     help="a scenario file: its topology, facts (delivery failures, gateway "
                          "verdicts, services, delays, further tenants) and, unless --rcpt "
                          "is given, its message (docs/routing/scenario.md)")
    sim.set_defaults(handler=run_simulate)
    gen = subparsers.add_parser(
        "exo-config", help="the Exchange Online connectors and rules, or a diagram",
        description="Lint the topology (errors refuse) and print the PowerShell for the "
                    "connectors and transport rules, or a Mermaid diagram of the mail flow. "
                    "Nothing is executed. Exit codes: 0 printed, 78 bad topology or lint "
                    "error.")
    gen.add_argument("--config", required=True, metavar="TOPOLOGY.toml", help="the topology")
    gen.add_argument("--format", choices=["powershell", "mermaid"], default="powershell",
                     dest="fmt", help="output format (default: powershell)")
    gen.add_argument("--script", choices=SCRIPTS,
                     help="which PowerShell script (default: all four, as #region blocks); "
                          "only with --format powershell")
    gen.set_defaults(handler=run_exo_config)


def _scl(text: str) -> int:
    """argparse type of ``--scl``: Exchange's spam confidence levels are -1 to 9."""
    value = int(text)
    if not -1 <= value <= 9:
        raise ValueError("must be -1 to 9")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="TOPOLOGY.toml",
                        help="the topology (required unless simulate --scenario names it)")
    add_envelope_arguments(parser)
    parser.add_argument("--in", dest="in_file", metavar="FILE", type=Path,
                        help="take header fields, Message-ID, From, size and MIME facts from "
                             "this message ('-' for standard input); --header and --flag add "
                             "to them")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="a header field of the message (repeatable)")
    parser.add_argument("--flag", action="append", default=[],
                        choices=[f.value for f in MessageFlag],
                        help="a message fact such as oof, calendaring, dsn (repeatable)")
    parser.add_argument("--message-id", metavar="ID", help="the Message-ID (default: from "
                        "--header, else a fixed sample id)")
    parser.add_argument("--scl", type=_scl, help="EOP's spam confidence level (-1 to 9)")
    parser.add_argument("--now", type=unix_time, metavar="UNIX_TIME",
                        help=f"the clock (default: {_NOW_DEFAULT})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--explain", action="store_true",
                        help="print what each step code (E1, R, X, G3 ...) means beside the "
                             "step (docs/routing/steps.md)")
    tenant = parser.add_mutually_exclusive_group()
    tenant.add_argument("--export", metavar="PATH",
                        help="use the tenant as read back from this Get-* JSON export, rules "
                             "as they are (docs/routing/exo-diff.md)")
    tenant.add_argument("--as-is", action="store_true",
                        help="use the topology file's tenant as written: its mailroute rules "
                             "are taken as they are, not regenerated")


def _message(args: argparse.Namespace, envelope: Envelope) -> MessageFacts | ExitCode:
    base = MessageFacts()
    if args.in_file is not None:
        parsed = read_message(args)
        if isinstance(parsed, ExitCode):
            return parsed
        base = message_facts(parsed, size=len(parsed.to_bytes()))
    headers: list[tuple[str, str]] = list(base.headers)
    for field in args.header:
        name, sep, value = field.partition(":")
        if not sep or not name.strip():
            raise ValueError("--header needs 'Name: value'")
        if any(ch in field for ch in "\r\n\0"):
            raise ValueError("--header contains CR, LF or NUL")
        headers.append((name.strip(), value.strip()))
    found = {k.lower(): v for k, v in headers}
    message_id = (args.message_id or base.message_id or found.get("message-id")
                  or "<sample@mailroute.invalid>")
    sender = found.get("from", envelope.mail_from)
    from_addrs = base.from_addrs or ((sender.strip("<> ").lower(),) if sender else ())
    return base.evolve(headers=tuple(headers), message_id=message_id, from_addrs=from_addrs,
                       flags=base.flags | {MessageFlag(f) for f in args.flag},
                       scl=args.scl if args.scl is not None else base.scl)


def _load(args: argparse.Namespace) -> Topology:
    if not args.config:
        raise ConfigError("--config TOPOLOGY.toml is required", source="command line")
    return load_topology(args.config)


def _tenant(args: argparse.Namespace, topology: Topology) -> Tenant:
    """The tenant to decide in: the plan installed, the export as read, or the file as is."""
    if args.export:
        return tenant_from_export(topology, load_export(args.export))
    if args.as_is:
        return topology.tenant
    return deployed(topology)


def _now(args: argparse.Namespace) -> int:
    if args.now is not None:
        return int(args.now)
    return int(datetime.now(UTC).timestamp())


def _sender_local(topology: Topology, envelope: Envelope) -> bool:
    return topology.tenant.accepted_domain(domain_of(envelope.mail_from)) is not None


def _source(args: argparse.Namespace, topology: Topology, envelope: Envelope) -> Source:
    if args.source:
        return Source(args.source)
    if envelope.tls_peer_name and envelope.tls_peer_name.lower() in topology.gateway.identities:
        return Source.GATEWAY
    if envelope.direction is Direction.INBOUND or envelope.client_address:
        return Source.INTERNET
    if envelope.direction is not None or _sender_local(topology, envelope):
        return Source.MAILBOX
    return Source.INTERNET


def _inputs(args: argparse.Namespace,
            ) -> tuple[Topology, Tenant, Envelope, MessageFacts] | int:
    missing = [option for option, given in (("--config", args.config), ("--rcpt", args.rcpt))
               if not given]
    if missing:  # a decision about nobody, or about no topology, is no answer (CLI.md: 2)
        sys.stderr.write(f"mailroute {args.command}: {' and '.join(missing)} required\n")
        return ExitCode.USAGE
    try:
        topology = _load(args)
        tenant = _tenant(args, topology)
    except ConfigError as error:
        return report_config_error(error)
    try:
        envelope = envelope_from_args(args)
        message = _message(args, envelope)
    except ValueError as error:
        sys.stderr.write(f"mailroute {args.command}: {error}\n")
        return ExitCode.USAGE
    if isinstance(message, ExitCode):
        return message
    return topology, tenant, envelope, message


def run_route(args: argparse.Namespace) -> int:
    """Decide one hop and print the decision."""
    if args.at == "gateway" and args.source:
        # the gateway tells Exchange Online from the internet by the connection itself
        sys.stderr.write("mailroute route: --source is for --at exo; at the gateway, "
                         "--tls-name and --client-ip say who connects\n")
        return ExitCode.USAGE
    inputs = _inputs(args)
    if isinstance(inputs, int):
        return inputs
    topology, tenant, envelope, message = inputs
    source = _source(args, topology, envelope)
    names = (envelope.tls_peer_name,) if envelope.tls_peer_name else ()
    hop = Hop(envelope=envelope, message=message, connection=Connection(
        source=source, client_ip=envelope.client_address, tls=True, peer_cert_names=names))
    now = _now(args)
    rules: tuple[str, ...] = ()
    if args.at == "gateway":
        markers = simulation_markers(topology.gateway.marker.tag, topology.tenant.tenant_id,
                                     windows=gateway_settings(topology).windows)
        g = decide_gateway(hop, topology, markers=markers, now=now)
        routes, trace = g.routes, g.trace
    else:
        d = decide_exo(hop, tenant, now=datetime.fromtimestamp(now, UTC))
        routes, trace = d.routes, d.trace
        rules = tuple(dict.fromkeys(r for c in d.copies for r in c.rules))
    obj = route_object(routes, rules, trace, explain=args.explain)
    if args.json:
        write_stdout_text(json.dumps(obj, indent=2) + "\n")
    else:
        write_stdout_text("".join(f"{t.step:<4}{t.detail}\n"
                                  + (explain_line(t, "") if args.explain else "")
                                  for t in trace))
        for r in routes:
            write_stdout_text(f"{r.recipient}: {r.kind} {r.next_hop}\n".rstrip() + "\n")
    refused = [r for r in routes if r.kind is RouteKind.REJECT]
    if routes and len(refused) == len(routes) and refused[0].reply is not None:
        reply = refused[0].reply
        sys.stderr.write(f"{reply.status} {reply.text}\n")
        return ExitCode.UNAVAILABLE
    return ExitCode.OK


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate the message and print the trace."""
    if getattr(args, "scenario", None):
        return _run_scenario(args)
    inputs = _inputs(args)
    if isinstance(inputs, int):
        return inputs
    topology, tenant, envelope, message = inputs
    if args.origin:
        origin = Origin(args.origin)
    elif envelope.direction is Direction.INBOUND:
        origin = Origin.INTERNET
    elif envelope.direction is not None or _sender_local(topology, envelope):
        origin = Origin.MAILBOX
    else:
        origin = Origin.INTERNET
    sim = run_simulation(envelope, message, topology, tenant=tenant, origin=origin,
                         now=_now(args))
    return _print_simulation(args, sim)


def _run_scenario(args: argparse.Namespace) -> int:
    """``simulate --scenario``: the scenario's topology, facts and (by default) message."""
    try:
        loaded = load_scenario(args.scenario)
    except ConfigError as error:
        return report_config_error(error)
    spec = loaded.message
    if args.rcpt or spec is None:
        try:
            envelope = envelope_from_args(args)
            message = _message(args, envelope)
        except ValueError as error:
            sys.stderr.write(f"mailroute simulate: {error}\n")
            return ExitCode.USAGE
        if isinstance(message, ExitCode):
            return message
        if not envelope.rcpt_to:
            sys.stderr.write("mailroute simulate: the scenario has no [message]: give --rcpt\n")
            return ExitCode.USAGE
        origin = Origin(args.origin) if args.origin else (
            Origin.MAILBOX if _sender_local(loaded.topology, envelope) else Origin.INTERNET)
        now = _now(args)
    else:
        envelope = Envelope(mail_from=spec.mail_from, rcpt_to=spec.rcpt_to)
        message, now = spec.facts(), spec.now if args.now is None else int(args.now)
        origin = Origin(args.origin or spec.origin)
    sim = run_simulation(envelope, message, loaded.topology, tenant=loaded.tenant,
                         origin=origin, now=now, scenario=loaded.scenario)
    return _print_simulation(args, sim)


def _print_simulation(args: argparse.Namespace, sim: Simulation) -> int:
    if args.json:
        write_stdout_text(json.dumps(simulation_object(sim, explain=args.explain), indent=2)
                          + "\n")
    else:
        write_stdout_text(render_text(sim, explain=args.explain))
    return ExitCode.NEGATIVE if sim.loop or sim.bypass else ExitCode.OK


def run_exo_config(args: argparse.Namespace) -> int:
    """Lint, then print PowerShell or Mermaid."""
    if args.fmt == "mermaid" and args.script is not None:
        sys.stderr.write("mailroute exo-config: --script chooses a PowerShell script; "
                         "--format mermaid draws the whole mail flow\n")
        return ExitCode.USAGE
    try:
        topology = _load(args)
        text, findings = exo_config(topology, fmt=args.fmt, script=args.script or "all",
                                    source=args.config)
    except LintRefused as refused:
        for finding in refused.findings:
            sys.stderr.write(f"{args.config}: {finding}\n")
        return ExitCode.CONFIG
    except ConfigError as error:
        return report_config_error(error)
    write_stdout_text(text)  # first: if it fails, its status line comes first (CLI.md)
    for finding in findings:
        sys.stderr.write(f"{args.config}: {finding}\n")
    return ExitCode.OK
