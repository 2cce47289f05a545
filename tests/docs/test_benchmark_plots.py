"""benchmarks/plot.py draws the benchmark page's plots from the committed JSON results: run on
them it gives the committed SVGs (same files, same labels and values), and the page shows
every one of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType

from tests.docs.loader import load_script

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "benchmarks"
PAGE = ROOT / "docs" / "benchmarks.md"



def _plot_module() -> ModuleType:
    return load_script("benchmarks/plot.py", "benchmark_plot")


def _texts(svg: Path) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg.read_text(encoding="utf-8"))


def test_plots_regenerate_from_the_committed_results(tmp_path: Path) -> None:
    plot = _plot_module()
    assert plot.main(["--results", str(RESULTS), "--out", str(tmp_path)]) == 0
    drawn = sorted(p.name for p in tmp_path.glob("*.svg"))
    committed = sorted(p.name for p in FIGURES.glob("*.svg"))
    assert drawn == committed
    charts = sum(len(json.loads(f.read_text())["charts"]) for f in RESULTS.glob("*.json"))
    assert len(drawn) == charts >= 5
    for name in drawn:
        assert _texts(tmp_path / name) == _texts(FIGURES / name), name


def test_every_value_is_labelled_on_its_plot() -> None:
    plot = _plot_module()
    for source in RESULTS.glob("*.json"):
        document = json.loads(source.read_text())
        for number, chart in enumerate(document["charts"], start=1):
            texts = _texts(FIGURES / f"{document['benchmark']}-{number}.svg")
            for case in chart["cases"]:
                assert case["case"] in texts
                for value in case["values"].values():
                    assert plot._label(value) in texts


def test_the_page_shows_every_plot() -> None:
    page = PAGE.read_text(encoding="utf-8")
    shown = set(re.findall(r"\(benchmarks/([\w-]+\.svg)\)", page))
    assert shown == {p.name for p in FIGURES.glob("*.svg")}
