"""Draw the benchmark page's plots from the JSON the benchmarks write (``--json``).

Reads every ``benchmarks/results/*.json`` and writes one SVG per chart into ``docs/benchmarks/``
(``NAME-N.svg``): grouped bars, mailroute against the tools an administrator would use
instead, each bar labelled with its value. The SVGs are deterministic for given results
(no timestamps, fixed ids), so regenerating without new results changes nothing.

    .venv/bin/python benchmarks/plot.py [--results DIR] [--out DIR]

Needs matplotlib (the ``docs`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("svg")

import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
COLOURS = ("#1f5fa8", "#c8702a", "#6b8e23", "#8a4f9e")

plt.rcParams.update({"svg.hashsalt": "mailroute", "svg.fonttype": "none",
                     "font.family": "DejaVu Sans", "font.size": 9})


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def draw(chart: dict[str, object], recorded: str, machine: dict[str, object],
         path: Path) -> None:
    """One grouped bar chart."""
    names = chart["series"]
    assert isinstance(names, list)
    series = [str(s) for s in names]
    cases = chart["cases"]
    assert isinstance(cases, list)
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(max(4.5, 1.2 + 1.1 * len(cases)), 3.4))
    for index, name in enumerate(series):
        xs = [number + (index - (len(series) - 1) / 2) * width for number in range(len(cases))]
        values = [float(case["values"].get(name, 0.0)) for case in cases]
        bars = axes.bar(xs, values, width, label=name, color=COLOURS[index % len(COLOURS)])
        axes.bar_label(bars, labels=[_label(v) for v in values], fontsize=7, padding=1)
    axes.set_xticks(range(len(cases)), [str(case["case"]) for case in cases])
    better = "lower is better" if chart["lower_is_better"] else "higher is better"
    axes.set_ylabel(f"{chart['unit']} ({better})")
    axes.set_title(str(chart["title"]))
    axes.spines[["top", "right"]].set_visible(False)
    axes.margins(y=0.15)
    axes.legend(frameon=False, fontsize=8)
    figure.text(0.01, 0.01, f"{recorded}, {machine.get('cpus')} CPUs, load average "
                f"{machine.get('load_average')}", fontsize=6, color="#666666")
    figure.tight_layout()
    figure.savefig(path, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Draw every chart of every results file; print the files written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for source in sorted(args.results.glob("*.json")):
        document = json.loads(source.read_text(encoding="utf-8"))
        for number, chart in enumerate(document["charts"], start=1):
            path = args.out / f"{document['benchmark']}-{number}.svg"
            draw(chart, document["recorded"], document["machine"], path)
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
