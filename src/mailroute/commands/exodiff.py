"""``mailroute exo-diff``: the tenant as read back against the plan (docs/routing/exo-diff.md).

Reads the ``Get-*`` JSON export, builds the tenant as it is, prints every difference from
the plan (missing, extra, changed: property by property) and the lint findings on the
tenant as read. ``--write-plan`` prints the export a correctly installed tenant would give.
Simulating the tenant as read is ``mailroute simulate --export PATH``.

Exit codes: 0 no difference and no lint error, 1 differences or lint errors, 78 unreadable
topology or export.
"""

from __future__ import annotations

import argparse
import json
import sys

from mailroute.commands.common import report_config_error, write_stdout_text
from mailroute.errors import ConfigError
from mailroute.exitcodes import ExitCode
from mailroute.routing import deployed, lint, load_topology
from mailroute.routing.diff import diff_tenants
from mailroute.routing.export import export_tenant
from mailroute.routing.lint import errors
from mailroute.routing.readback import load_export, tenant_from_export

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
    findings = lint(topology, actual)
    if args.json:
        write_stdout_text(json.dumps({
            "differences": [{"change": str(d.change), "section": d.section, "name": d.name,
                             "property": d.prop or None, "planned": d.planned,
                             "actual": d.actual} for d in differences],
            "lint": [{"code": f.code, "severity": str(f.severity), "message": f.message,
                      "subject": f.subject} for f in findings]}, indent=2, default=str)
            + "\n")
    else:
        text = "".join(f"{d}\n" for d in differences) or "no difference from the plan\n"
        text += "".join(f"lint {f}\n" for f in findings)
        write_stdout_text(text)
    return ExitCode.NEGATIVE if differences or errors(findings) else ExitCode.OK
