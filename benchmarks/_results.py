"""Benchmark results as JSON, for benchmarks/plot.py and the benchmark page.

Each comparison benchmark takes ``--json FILE`` and writes one document::

    {"benchmark": "disclaimer", "recorded": "2026-12-06T05:10:00Z",
     "machine": {"cpus": 2, "load_average": 3.1, "python": "3.11.7", "platform": "..."},
     "charts": [{"title": "...", "unit": "ms per message", "lower_is_better": true,
                 "series": ["mailroute", "alterMIME"],
                 "cases": [{"case": "small", "values": {"mailroute": 0.4, "alterMIME": 3.9}}]}]}

``Results`` collects charts while the benchmark prints its table as before.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

__all__ = ["Results", "add_json_argument"]


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json FILE``: also write the figures as JSON (benchmarks/results/NAME.json)."""
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the results as JSON (for benchmarks/plot.py)")


class Results:
    """The charts of one benchmark run."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.charts: list[dict[str, object]] = []
        self._machine = {"cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
                         "python": platform.python_version(), "platform": platform.platform()}

    def chart(self, title: str, unit: str, series: list[str], *,
              lower_is_better: bool) -> list[dict[str, object]]:
        """Start a chart; append ``{"case": ..., "values": {series: number}}`` to the list."""
        cases: list[dict[str, object]] = []
        self.charts.append({"title": title, "unit": unit, "lower_is_better": lower_is_better,
                            "series": series, "cases": cases})
        return cases

    def write(self, path: Path | None) -> None:
        """Write the JSON document to ``path`` (nothing when ``None``)."""
        if path is None:
            return
        document = {"benchmark": self.benchmark,
                    "recorded": datetime.datetime.now(datetime.UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"),
                    "machine": self._machine, "charts": self.charts}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
