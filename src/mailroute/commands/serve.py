"""``mailroute serve``: the SMTP gateway service (a before-queue proxy to the next hop).

``--check`` is the monitoring probe: it loads the policy, then talks SMTP to the running
service on ``--listen`` and to ``--next-hop`` (greeting, EHLO, QUIT) and exits 0 when both
answer, 75 (status line first) when either does not, 78 for a bad policy.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mailroute.commands.common import (
    add_log_arguments,
    message_log_from_args,
    timeout,
    write_stdout_text,
)
from mailroute.commands.metricsopt import add_metrics_argument, metrics_address, start_metrics
from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode
from mailroute.records import replace

if TYPE_CHECKING:
    from mailroute.adapters.serve import ServeSettings
    from mailroute.adapters.serve_routes import NextHop, Router

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve``."""
    parser = subparsers.add_parser(
        "serve", help="run the SMTP gateway service (content filter, before-queue proxy)",
        description="Accept SMTP on LISTEN, run POLICY over every message and hand it on to "
                    "NEXT-HOP in the same session: each RCPT gets the next hop's answer, the "
                    "final dot 250 only after the next hop accepted the processed message. "
                    "Internal and next-hop failures answer 451 4.x.x. SIGTERM finishes "
                    "transactions in flight (at most 5 s) and exits. Exit codes: 0 stopped "
                    "(--check: healthy), 2 usage, 75 cannot listen (--check: unhealthy), "
                    "78 bad policy or TLS files.")
    parser.add_argument("--config", required=True, metavar="POLICY.toml", help="the policy file")
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="where to listen")
    parser.add_argument("--next-hop", metavar="HOST:PORT",
                        help="where accepted mail goes (e.g. Postfix's reinjection smtpd); "
                             "required unless --topology")
    parser.add_argument("--topology", type=Path, metavar="TOPOLOGY.toml",
                        help="route each recipient as the gateway decision of this topology "
                             "says (what `mailroute simulate` shows): the tenant's smart host, "
                             "or in T1 the recipient's MX for mail leaving the organisation")
    parser.add_argument("--relay", metavar="HOST:PORT",
                        help="with --topology: send mail for the internet here instead of "
                             "to the recipient's MX")
    parser.add_argument("--route", action="append", metavar="NAME=HOST:PORT",
                        help="with --topology: reach next hop NAME (the smart host, an MX "
                             "host) at HOST:PORT instead (repeatable)")
    parser.add_argument("--dns-timeout", type=timeout, default=10.0, metavar="SECONDS",
                        help="with --topology: MX lookup timeout (default 10)")
    parser.add_argument("--check", action="store_true",
                        help="probe a running service and its next hop, then exit (0 or 75)")
    parser.add_argument("--hostname", default="mailroute.localdomain",
                        help="our name in the greeting and towards the next hop")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="threads that run the policy for large messages")
    parser.add_argument("--spool-dir", type=Path, metavar="DIR",
                        help="where DATA above 1 MiB is spooled (default: the temp directory)")
    parser.add_argument("--next-hop-timeout", type=timeout, default=60.0, metavar="SECONDS",
                        help="longest wait for a next-hop reply to a command (default 60)")
    parser.add_argument("--processing-timeout", type=timeout, default=240.0, metavar="SECONDS",
                        help="longest policy run per message before 451 (default 240)")
    parser.add_argument("--xforward-host", action="append", metavar="NETWORK",
                        help="networks whose XFORWARD is believed (default 127.0.0.0/8, ::1)")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls-cert", type=Path, metavar="FILE",
                     help="our certificate chain (PEM): offer STARTTLS")
    tls.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (PEM)")
    tls.add_argument("--require-tls", action="store_true",
                     help="refuse everything but EHLO/NOOP/QUIT before STARTTLS")
    tls.add_argument("--client-ca", type=Path, metavar="FILE",
                     help="require a client certificate issued by these CAs (PEM)")
    tls.add_argument("--client-name", action="append", metavar="NAME",
                     help="a name the client certificate must carry (repeatable; *.dom "
                          "matches one label)")
    tls.add_argument("--next-hop-tls", action="store_true",
                     help="require STARTTLS towards the next hop, certificate verified")
    tls.add_argument("--next-hop-ca", type=Path, metavar="FILE",
                     help="CAs for the next hop's certificate (default: the system's)")
    tls.add_argument("--next-hop-name", metavar="NAME",
                     help="the name the next hop's certificate must carry (default: its host)")
    tls.add_argument("--next-hop-cert", type=Path, metavar="FILE",
                     help="our client certificate towards the next hop (PEM)")
    tls.add_argument("--next-hop-key", type=Path, metavar="FILE", help="its private key")
    tls.add_argument("--inbound-identity-cert", type=Path, metavar="FILE",
                     help="with --topology (T3): the certificate presented to Exchange for "
                          "mail from the internet (the topology's inbound_tls_identity)")
    tls.add_argument("--inbound-identity-key", type=Path, metavar="FILE",
                     help="its private key")
    add_log_arguments(parser, default="auto")
    add_metrics_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the policy and serve until SIGTERM (or probe with ``--check``)."""
    from mailroute.adapters.serve import parse_hostport, serve
    from mailroute.policy import load_policy

    try:
        listen = parse_hostport(args.listen)
        next_hop = parse_hostport(args.next_hop) if args.next_hop else None
        relay = parse_hostport(args.relay) if args.relay else None
        routes = dict(_route(text) for text in args.route or ())
        metrics_listen = metrics_address(args.metrics)
    except ValueError as error:
        sys.stderr.write(f"mailroute serve: {error}\n")
        return ExitCode.USAGE
    if next_hop is not None and args.topology is not None:
        sys.stderr.write("mailroute serve: give --next-hop or --topology, not both\n")
        return ExitCode.USAGE
    try:
        pipeline = load_policy(args.config)
    except ConfigError as error:
        sys.stderr.write(f"4.3.5 configuration error: {error}\n")
        return ExitCode.CONFIG
    if next_hop is None and args.topology is None:
        args.topology = pipeline.topology_file  # a policy naming its topology: route by it
    if next_hop is None and args.topology is None:
        sys.stderr.write("mailroute serve: give --next-hop or --topology (or name the "
                         "topology in the policy)\n")
        return ExitCode.USAGE
    if args.topology is None and (relay or routes):
        sys.stderr.write("mailroute serve: --relay and --route need --topology\n")
        return ExitCode.USAGE
    try:
        settings = _settings(args, next_hop)
        if args.topology is not None:
            settings = replace(settings, router=_topology_router(args, settings, relay, routes))
    except ConfigError as error:
        sys.stderr.write(f"4.3.5 configuration error: {error}\n")
        return ExitCode.CONFIG
    if args.check:
        return asyncio.run(_check(listen, settings))
    metrics = start_metrics("serve", metrics_listen, pipeline.quarantine_dir, _fail)
    if isinstance(metrics, ExitCode):
        return metrics
    try:
        asyncio.run(serve(pipeline, listen, settings, message_log=message_log_from_args(args),
                          metrics=metrics))
    except OSError as error:
        sys.stderr.write(f"4.3.0 cannot listen on {args.listen}: {error.strerror or error}\n")
        return ExitCode.TEMPFAIL
    finally:
        if metrics is not None:
            metrics.close()
    return ExitCode.OK


def _fail(code: ExitCode, text: str) -> int:
    sys.stderr.write(f"mailroute serve: {text}\n")
    return code


def _route(text: str) -> tuple[str, tuple[str, int]]:
    from mailroute.adapters.serve import parse_hostport

    name, equals, target = text.partition("=")
    if not equals or not name:
        raise ValueError(f"--route must be NAME=HOST:PORT, not {text!r}")
    return name, parse_hostport(target)


def _topology_router(args: argparse.Namespace, settings: ServeSettings,
                     relay: tuple[str, int] | None,
                     routes: dict[str, tuple[str, int]]) -> Router:
    from mailroute.adapters.serve_routes import NextHop, TopologyRouter
    from mailroute.dkim.dns import dnspython_lookup
    from mailroute.routing import load_topology

    topology = load_topology(args.topology)
    tls = settings.tls_to_next_hop
    relay_hop = NextHop(relay[0], relay[1], tls, args.next_hop_name) if relay else None
    identities = {}
    inbound = topology.gateway.inbound_tls_identity
    if args.inbound_identity_cert is not None:
        if tls is None or not inbound:
            raise ConfigError("--inbound-identity-cert needs --next-hop-tls and a topology "
                              "with inbound_tls_identity")
        identities[inbound] = _client_context(args, args.inbound_identity_cert,
                                              args.inbound_identity_key,
                                              "--inbound-identity-cert")
    return TopologyRouter(topology, resolve_mx=dnspython_lookup(args.dns_timeout).mx,
                          relay=relay_hop, overrides=routes, tls=tls, identities=identities)


def _settings(args: argparse.Namespace, next_hop: tuple[str, int] | None) -> ServeSettings:
    from mailroute.adapters.serve import ServerTLS, ServeSettings
    from mailroute.adapters.serve_routes import NextHop
    from mailroute.adapters.smtp_client import NextHopTimeouts

    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    server_tls = None
    if args.tls_cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _load_chain(context, args.tls_cert, args.tls_key, "--tls-cert")
        if args.client_ca is not None:
            _load_ca(context, args.client_ca, "--client-ca")
            context.verify_mode = ssl.CERT_REQUIRED
        server_tls = ServerTLS(context, required=args.require_tls,
                               client_names=tuple(args.client_name or ()))
    elif args.require_tls or args.client_ca or args.client_name:
        raise ConfigError("--require-tls, --client-ca and --client-name need --tls-cert")
    hop_tls = None
    if args.next_hop_tls:
        hop_tls = _client_context(args, args.next_hop_cert, args.next_hop_key, "--next-hop-cert")
    elif args.next_hop_ca or args.next_hop_name or args.next_hop_cert:
        raise ConfigError("--next-hop-ca, --next-hop-name and --next-hop-cert need "
                          "--next-hop-tls")
    settings = ServeSettings(
        hostname=args.hostname,
        next_hop=NextHop(next_hop[0], next_hop[1], hop_tls, args.next_hop_name)
        if next_hop else None, tls_to_next_hop=hop_tls,
        timeouts=replace(NextHopTimeouts(), command=args.next_hop_timeout),
        processing_timeout=args.processing_timeout, spool_dir=args.spool_dir, tls=server_tls)
    if args.workers is not None:
        settings = replace(settings, workers=args.workers)
    if args.xforward_host:
        settings = replace(settings, xforward_hosts=tuple(args.xforward_host))
    return settings


def _client_context(args: argparse.Namespace, cert: Path | None, key: Path | None,
                    flag: str) -> ssl.SSLContext:
    """A client context towards next hops: the system's CAs or ``--next-hop-ca`` only, and
    ``cert`` as our certificate when given."""
    context = ssl.create_default_context()
    if args.next_hop_ca is not None:  # only these CAs, not the system's
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_ca(context, args.next_hop_ca, "--next-hop-ca")
    if cert is not None:
        _load_chain(context, cert, key, flag)
    return context


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path | None, flag: str) -> None:
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"{flag}: cannot load certificate and key: "
                          f"{getattr(error, 'strerror', None) or type(error).__name__}",
                          source=str(cert)) from None


def _load_ca(context: ssl.SSLContext, cafile: Path, flag: str) -> None:
    try:
        context.load_verify_locations(cafile=cafile)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"{flag}: cannot load CA certificates: "
                          f"{getattr(error, 'strerror', None) or type(error).__name__}",
                          source=str(cafile)) from None


async def _check(listen: tuple[str, int], settings: ServeSettings) -> int:
    """Greeting, EHLO and QUIT with the service and with its next hop."""
    from mailroute.adapters.smtp_client import NextHopClient, NextHopError, NextHopTimeouts

    quick = NextHopTimeouts(connect=10.0, command=10.0)
    hop = settings.next_hop or _smart_host(settings)
    probes = (("service", listen[0], listen[1], None, None),
              ("next hop", hop.host, hop.port, hop.tls, hop.tls_name))
    for what, host, port, tls, name in probes:
        try:
            client = await NextHopClient.open(host, port, helo=settings.hostname,
                                              timeouts=quick, tls=tls, tls_name=name)
        except NextHopError as error:
            sys.stderr.write(f"4.4.1 {what} {host}:{port} not healthy: {error}\n")
            return ExitCode.TEMPFAIL
        await client.quit()
    write_stdout_text(f"ok: service {listen[0]}:{listen[1]} and next hop {hop} answer\n")
    return ExitCode.OK


def _smart_host(settings: ServeSettings) -> NextHop:
    """In topology mode the probe checks the tenant's smart host (through ``--route``)."""
    from mailroute.adapters.serve_routes import TopologyRouter

    router = settings.router
    assert isinstance(router, TopologyRouter)
    return router.smart_host()
