"""Step codes explained (issue 18): one table, the docs page, and every emitted code covered."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mailroute.cli import main
from mailroute.routing.steps import STEP_TEXTS, explain
from tests.routing.support import EXAMPLES, FILES, NOW
from tests.routing.test_scenarios import SCENARIOS, run

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "routing" / "steps.md"
_ROW = re.compile(r"^\| `(?P<code>[A-Z0-9]+)` \| (?P<node>[^|]+) \| (?P<sentence>[^|]+) \| "
                  r"(?P<sources>[^|]+) \|$")
_LITERAL = re.compile(r"(?:TraceStep|GatewayStep)\(\s*\"([A-Z0-9]+)\""
                      r"|\"5\.\d\.\d+\": \"([A-Z0-9]+)\"")


def _page_rows() -> dict[str, tuple[str, str, str]]:
    rows: dict[str, tuple[str, str, str]] = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            rows[m["code"]] = (m["node"], m["sentence"], m["sources"])
    return rows


def test_docs_page_lists_exactly_the_table() -> None:
    rows = _page_rows()
    assert list(rows) == list(STEP_TEXTS)
    for code, text in STEP_TEXTS.items():
        assert rows[code] == (text.node, text.sentence, "; ".join(text.sources)), code
        assert text.sources, code


def test_every_code_written_in_the_source_has_an_entry() -> None:
    found: set[str] = set()
    for path in (ROOT / "src" / "mailroute").rglob("*.py"):
        for m in _LITERAL.finditer(path.read_text(encoding="utf-8")):
            found.add(m[1] or m[2])
    assert {"E1", "R", "X", "G1", "G8", "RES"} <= found  # the pattern still finds them
    assert found <= STEP_TEXTS.keys(), sorted(found - STEP_TEXTS.keys())


def test_every_code_the_scenarios_emit_has_an_entry() -> None:
    """Run every scenario of the three example topologies and collect the step codes."""
    emitted: set[str] = set()
    for s in SCENARIOS:
        sim, _, _ = run(s)
        emitted |= {t.step for step in sim.steps for t in step.trace}
    assert emitted <= STEP_TEXTS.keys(), sorted(emitted - STEP_TEXTS.keys())
    # the table has no dead rows: the scenarios reach every step but the two refusals no
    # example topology configures (Partner restriction E4 on a foreign sender, direct send E5)
    # and the service step S, which needs a scenario service (test_scenario_facts.py)
    assert STEP_TEXTS.keys() - emitted <= {"E4", "E5", "S"}, sorted(STEP_TEXTS.keys() - emitted)


def test_unknown_code_is_explained_as_unknown() -> None:
    assert explain("Z9") == "(no explanation for step Z9)"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_simulate_explain_prints_the_sentence_beside_each_step(
        capsys: pytest.CaptureFixture[str]) -> None:
    config = str(EXAMPLES / FILES["t2"])
    argv = ("simulate", "--config", config, "--mail-from", "alice@example.net",
            "--rcpt", "x@partner.example", "--now", str(NOW))
    _, plain = _run(capsys, *argv)
    code, out = _run(capsys, *argv, "--explain")
    assert code == 0
    assert STEP_TEXTS["G7"].sentence not in plain
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"    ([A-Z0-9]+) +\S", line)
        if m and not line.startswith("    = "):
            assert lines[i + 1] == f"        = {STEP_TEXTS[m[1]].sentence}", line
    assert f"        = {STEP_TEXTS['G7'].sentence}" in lines


def test_route_explain_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(EXAMPLES / FILES["t2"])
    argv = ("route", "--config", config, "--mail-from", "alice@example.net", "--rcpt",
            "x@partner.example", "--direction", "outbound", "--now", str(NOW), "--explain")
    code, out = _run(capsys, *argv)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("E2  ")
    assert lines[1] == f"    = {STEP_TEXTS['E2'].sentence}"
    assert f"    = {STEP_TEXTS['R'].sentence}" in lines
    code, out = _run(capsys, *argv, "--json")
    trace = json.loads(out)["trace"]
    assert trace
    assert all(t["explanation"] == STEP_TEXTS[t["step"]].sentence for t in trace)
    _, out = _run(capsys, *argv[:-1], "--json")
    assert all("explanation" not in t for t in json.loads(out)["trace"])


def test_lint_page_lists_every_lint_code() -> None:
    source = (ROOT / "src" / "mailroute" / "routing" / "lint.py").read_text(encoding="utf-8")
    emitted = set(re.findall(r"Finding\(\"(L-[A-Z0-9-]+)\"", source))
    page = (ROOT / "docs" / "routing" / "lint.md").read_text(encoding="utf-8")
    listed = {code for line in page.splitlines() if line.startswith("| `L-")
              for code in re.findall(r"`(L-[A-Z0-9-]+)`", line.split(" | ")[0])}
    assert emitted == listed, (sorted(emitted - listed), sorted(listed - emitted))


_NOTE_CITATION = re.compile(r"notes/|exchange-online\.md|§ ?\d|\bthe note\b|\bnote's\b|"
                            r"[Ss]ections? \d")


def test_docs_and_code_cite_no_section_of_an_unpublished_note() -> None:
    """The routing note is not in the repository: docs and code cite docs pages instead."""
    found = []
    files = [*(ROOT / "docs").rglob("*.md"), *(ROOT / "src" / "mailroute").rglob("*.py"),
             *(ROOT / "examples" / "topologies").glob("*.toml")]
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in _NOTE_CITATION.finditer(line):
                if re.search(r"RFC \d+\W*$", line[:m.start()]):
                    continue  # "RFC 5321 section 4.5.5" cites a published document
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
