"""The import rule of docs/architecture.md, read from the import graph of ``src/mailroute``.

Every module belongs to a layer; an import may point to the same layer or below, never up.
Engines sit side by side: one may import another only where it is a real client of it (the
pairs in ``ENGINE_CLIENTS``), and no two top-level parts import each other (no cycle).
Imports under ``if TYPE_CHECKING:`` are annotations, not arrows, and are not counted.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mailroute"

#: Bottom first. Keep in step with the table in docs/architecture.md.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "results", "limits", "exitcodes", "item", "logs", "patterns",
     "records", "digests", "paths"),                        # the contract
    ("mime", "keys", "config", "db"),                       # primitives
    ("protocols",),                                         # sans-I/O codecs
    ("disclaimer", "marker", "smime", "pgp", "dkim", "gateway", "routing",
     "cryptopolicy"),                                       # engines
    ("filters",),
    ("session",),
    ("pipeline",),
    ("policy",),
    ("adapters",),
    ("__init__", "testing", "dryrun", "check"),             # the public surface
    ("commands", "cli", "__main__"),
)
ENGINES = frozenset(LAYERS[3])
#: (client, engine it uses): the routing simulator runs the real gateway decision and the
#: real marker; the gateway decision reads marker verdicts and windows.
ENGINE_CLIENTS = frozenset({("routing", "gateway"), ("routing", "marker"),
                            ("gateway", "marker")})
LAYER_OF = {unit: index for index, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(child) for child in ast.walk(node))
    return hidden


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "mailroute" or name.startswith("mailroute.")}


def _arrows() -> dict[tuple[str, str], list[str]]:
    """(from unit, to unit) -> the modules that import across it."""
    arrows: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        for target in _imports(path):
            source_unit, target_unit = _unit(module), _unit(target)
            if source_unit != target_unit:
                arrows[(source_unit, target_unit)].append(module)
    return arrows


def test_every_part_of_the_package_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in SRC.rglob("*.py")}
    assert units - set(LAYER_OF) == set()


def test_no_import_points_up_the_layer_list() -> None:
    upward = {arrow: modules for arrow, modules in _arrows().items()
              if LAYER_OF[arrow[1]] > LAYER_OF[arrow[0]]}
    assert upward == {}


def test_engines_use_each_other_only_as_real_clients() -> None:
    sideways = {arrow for arrow in _arrows() if arrow[0] in ENGINES and arrow[1] in ENGINES}
    assert sideways <= ENGINE_CLIENTS


def test_no_two_parts_import_each_other() -> None:
    arrows = set(_arrows())
    assert {(a, b) for a, b in arrows if (b, a) in arrows} == set()


@pytest.mark.parametrize("engine", ["gateway", "marker", "mime"])
def test_the_graph_reader_sees_real_arrows(engine: str) -> None:
    # A reader that found no imports would pass every rule above: make sure it does not.
    assert any(source == engine for source, _ in _arrows())
