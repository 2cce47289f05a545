"""``mailroute exo-diff``: the tenant as read back against the plan (docs/routing/exo-diff.md).

Reads the ``Get-*`` JSON export, builds the tenant as it is, prints every difference from
the plan (missing, extra, changed: property by property) and the lint findings on the
tenant as read; ``--probe`` simulates three sample messages through it. ``--write-plan``
prints the export a correctly installed tenant would give. Any other message is simulated
through the tenant as read with ``mailroute simulate --export PATH``.

Exit codes: 0 no difference, no lint error and (with ``--probe``) no loop or bypass; 1
otherwise; 78 unreadable topology or export.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from mailroute.commands.common import report_config_error, unix_time, write_stdout_text
from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode
from mailroute.routing import deployed, lint, load_topology
from mailroute.routing.diff import diff_tenants
from mailroute.routing.export import export_tenant
from mailroute.routing.lint import errors
from mailroute.routing.probe import probe
from mailroute.routing.readback import load_export, tenant_from_export
from mailroute.routing.render import simulation_object

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``exo-diff``."""
    parser = subparsers.add_parser(
        "exo-diff", help="the tenant as read back (Get-* JSON) against the plan",
        description="Compare the tenant, as exported with Get-AcceptedDomain, "
                    "Get-InboundConnector, Get-OutboundConnector, Get-TransportRule and "
                    "Get-OrganizationConfig piped to ConvertTo-Json, with the plan for the "
                    "topology, and lint the tenant as read. Exit codes: 0 equal and no lint "
                    "error, 1 differences or lint errors, 78 unreadable input.")
    parser.add_argument("--config", required=True, metavar="TOPOLOGY.toml", help="the topology")
    parser.add_argument("--export", metavar="PATH",
                        help="the export: one JSON file with all sections, or a directory "
                             "with Get-AcceptedDomain.json ... (docs/routing/exo-diff.md)")
    parser.add_argument("--write-plan", action="store_true",
                        help="print the export of the planned tenant instead of comparing")
    parser.add_argument("--probe", action="store_true",
                        help="also simulate an internal, an outbound and an inbound sample "
                             "message through the tenant as read (exit 1 on a loop or bypass)")
    parser.add_argument("--now", type=unix_time, metavar="UNIX_TIME",
                        help="the clock for --probe and the lint's activation windows "
                             "(default: the current time)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run_exo_diff)


def run_exo_diff(args: argparse.Namespace) -> int:
    """Diff and lint the exported tenant."""
    try:
        topology = load_topology(args.config)
        planned = deployed(topology)
        if args.write_plan:
            write_stdout_text(json.dumps(export_tenant(planned), indent=2) + "\n")
            return ExitCode.OK
        if not args.export:
            sys.stderr.write("mailroute exo-diff: --export is required (or --write-plan)\n")
            return ExitCode.USAGE
        actual = tenant_from_export(topology, load_export(args.export))
    except ConfigError as error:
        return report_config_error(error)
    differences = diff_tenants(planned, actual)
    now = int(args.now) if args.now is not None else int(datetime.now(UTC).timestamp())
    findings = lint(topology, actual, now=datetime.fromtimestamp(now, UTC))
    probes = probe(topology, actual, now=now) if args.probe else ()
    if args.json:
        write_stdout_text(json.dumps({
            "probes": [{"message": p.label, "verdict": p.verdict,
                        "outcomes": simulation_object(p.simulation)["outcomes"]}
                       for p in probes],
            "differences": [{"change": str(d.change), "section": d.section, "name": d.name,
                             "property": d.prop or None, "planned": d.planned,
                             "actual": d.actual} for d in differences],
            "lint": [{"code": f.code, "severity": str(f.severity), "message": f.message,
                      "subject": f.subject} for f in findings]}, indent=2, default=str)
            + "\n")
    else:
        text = "".join(f"{d}\n" for d in differences) or "no difference from the plan\n"
        text += "".join(f"lint {f}\n" for f in findings)
        text += "".join(f"probe {p.label}: {p.verdict}\n" for p in probes)
        write_stdout_text(text)
    failed = any(p.verdict != "ok" for p in probes)
    return ExitCode.NEGATIVE if differences or errors(findings) or failed else ExitCode.OK
