"""The one-way flow, enforced: SDK -> wire -> processor -> metrics -> rules/dashboards (see docs/design.md).

An AST walk over every module of ``otel_ml`` (every ``import``, also inside functions and ``TYPE_CHECKING``
blocks) finds which top-level unit (subpackage or top-level module) imports which. The test fails on an import
the layer table below does not allow, on a unit missing from the table, and on any import cycle, between units or
between modules.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path

import otel_ml

ROOT = Path(otel_ml.__file__).parent
VERSION = "__version__"
"""``from otel_ml import __version__``: package metadata, allowed everywhere (lazily, inside functions)."""

FLOOR = frozenset({"errors", "semconv", VERSION})
"""Imports nothing from otel_ml; every layer may import it."""

ALLOWED: Mapping[str, frozenset[str]] = {
    "errors": frozenset(),
    "semconv": frozenset(),
    "otlp_values": frozenset(),  # the wire's AnyValue helpers: neutral ground of the SDK and the processor
    "compat": frozenset(),  # the one place that touches a private OpenTelemetry name (with public fallbacks)
    # SDK: runs inside inference code; knows the wire, never the processor.
    "instrumentation": FLOOR | {"otlp_values", "compat"},
    # compute packages the processor and the reference tooling use
    "quality": FLOOR,
    "drift": FLOOR,
    "estimation": FLOOR | {"drift"},
    "reference": FLOOR | {"drift", "estimation", "quality"},
    # the service: decodes the wire, never imports the SDK
    "processor": FLOOR | {"otlp_values", "quality", "drift", "estimation", "reference"},
    # metrics -> PromQL layer, then rules and dashboards side by side (they never import each other or the processor)
    "promql": FLOOR,
    "grafana_uids": frozenset(),
    "alerting": FLOOR | {"promql", "grafana_uids"},
    "dashboarding": FLOOR | {"promql", "grafana_uids"},
    # top: commands and the demo
    "generate": FLOOR | {"alerting", "dashboarding"},
    "demo": FLOOR | {"__init__", "instrumentation", "otlp_values", "quality", "drift", "estimation", "reference",
                     "processor", "promql", "alerting"},  # a user of the public API (``import otel_ml``), of the
    # processor, and of the alerts' defaults (it detects what the shipped alerts would page for)
    "cli": FLOOR,  # dispatches to the commands by module name, lazily
    "__main__": frozenset({"cli"}),
    "__init__": frozenset({"errors", "instrumentation"}),  # the public API: a thin re-export
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, module: str) -> Iterator[tuple[str, bool]]:
    """Absolute otel_ml module names imported by ``path``, and whether at module level (runs on import)."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from pkg import name`` imports pkg, and pkg.name when that is a module
                yield (f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base), id(node) in top


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


@functools.cache
def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(unit -> imported units, module -> modules imported at module level)."""
    units: dict[str, set[str]] = {}
    modules: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        unit = _unit(module)
        units.setdefault(unit, set())
        modules.setdefault(module, set())
        for name, at_top in _imports(path, module):
            if name != "otel_ml" and not name.startswith("otel_ml."):
                continue
            target = VERSION if name == "otel_ml" and _imports_only_version(path) else _unit(name)
            if target != unit:
                units[unit].add(target)
            if at_top and name != module:
                modules[module].add(name)
    return units, modules


def _imports_only_version(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    froms = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "otel_ml" and not n.level]
    return all(alias.name == VERSION for n in froms for alias in n.names) and bool(froms)


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_a_place_in_the_flow():
    units, _ = _graph()
    assert sorted(set(units) - set(ALLOWED)) == [], "add the new subpackage/module to ALLOWED (and docs/design.md)"


def test_imports_follow_the_one_way_flow():
    units, _ = _graph()
    wrong = sorted(f"{u} -> {t}" for u, targets in units.items() for t in targets - ALLOWED.get(u, frozenset()))
    assert wrong == []


def test_rules_and_dashboards_share_the_promql_layer_not_each_other():
    units, _ = _graph()
    assert "dashboarding" not in units["alerting"] and "alerting" not in units["dashboarding"]
    assert "processor" not in units["alerting"] | units["dashboarding"] | units["promql"]
    assert "promql" in units["alerting"]  # (the dashboards' declarations, dashboards/*.dashboard.py, use it too)


def test_no_import_cycle_between_units_or_modules():
    units, modules = _graph()
    assert _cycles(units) == []
    assert _cycles(modules) == []
    assert _cycles({u: set(t) for u, t in ALLOWED.items()}) == []  # the table itself is a DAG


def test_the_walk_sees_imports():
    # guard against a walk that finds nothing (then every check above would pass vacuously)
    units, modules = _graph()
    assert {"semconv", "errors"} <= units["processor"]
    assert "otel_ml.processor.records" in modules["otel_ml.processor.step"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
