"""``mailroute exo-config`` as a function: lint first, then PowerShell or Mermaid.

Generation is refused with :class:`LintRefused` when the lint (docs/routing/lint.md) reports
an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailroute.errors import ConfigError
from mailroute.routing.lint import Finding, errors, lint
from mailroute.routing.mermaid import render_mermaid
from mailroute.routing.plan import build_plan, deployed
from mailroute.routing.powershell import render_powershell

if TYPE_CHECKING:
    from mailroute.routing.topology import Topology

__all__ = ["SCRIPTS", "LintRefused", "exo_config"]

SCRIPTS = ("all", "install", "verify", "enable", "remove")


class LintRefused(ConfigError):
    """The topology has lint errors; ``findings`` holds every finding (errors first)."""

    def __init__(self, findings: tuple[Finding, ...], *, source: str | None = None) -> None:
        self.findings = findings
        bad = errors(findings)
        super().__init__(f"{len(bad)} lint error(s), generation refused: {bad[0]}",
                         source=source, key=bad[0].subject or None)


def exo_config(topology: Topology, *, fmt: str = "powershell", script: str = "all",
               source: str | None = None) -> tuple[str, tuple[Finding, ...]]:
    """The generated text and the lint findings.

    Args:
        topology: the loaded topology.
        fmt: ``powershell`` or ``mermaid``.
        script: for PowerShell, ``all`` or one of ``install``, ``verify``, ``enable``, ``remove``.
        source: the file name, for error messages.

    Raises:
        LintRefused: the lint found an error.
        ValueError: unknown ``fmt`` or ``script``.
    """
    if fmt not in ("powershell", "mermaid") or script not in SCRIPTS:
        raise ValueError("unknown format or script")
    plan = build_plan(topology)
    findings = lint(topology, deployed(topology, plan))
    if errors(findings):
        raise LintRefused(tuple(sorted(findings, key=lambda f: f.severity != "E")),
                          source=source)
    if fmt == "mermaid":
        return render_mermaid(topology, plan), findings
    scripts = render_powershell(topology, plan)
    text = scripts.combined() if script == "all" else str(getattr(scripts, script))
    return text, findings
