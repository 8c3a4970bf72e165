"""otel-ml uses public OpenTelemetry names only, outside ``otel_ml/compat.py``; the instrumentation SDK imports the
OpenTelemetry API and nothing heavier at module level (the base install has no SDK, protobuf, grpcio or pyyaml)."""

from __future__ import annotations

import ast
from pathlib import Path

import otel_ml

ROOT = Path(otel_ml.__file__).parent
COMPAT = ROOT / "compat.py"


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p != COMPAT)


def _private(parts: list[str]) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in parts)


def test_no_private_opentelemetry_names_outside_compat() -> None:
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("opentelemetry"):
                names = [alias.name for alias in node.names]
                if _private(node.module.split(".")) or _private(names):  # type: ignore[union-attr]
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module} import {names}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("opentelemetry") and _private(alias.name.split(".")):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} import {alias.name}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and _private([node.args[1].value])):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} getattr(..., {node.args[1].value!r})")
    assert not found, "private OpenTelemetry names belong in otel_ml/compat.py (with a public fallback):\n" + \
        "\n".join(found)


HEAVY = ("opentelemetry.sdk", "opentelemetry.proto", "opentelemetry.exporter", "google.protobuf", "grpc", "yaml")


def test_instrumentation_imports_nothing_heavier_than_the_api_at_module_level() -> None:
    found = []
    for path in [*sorted((ROOT / "instrumentation").rglob("*.py")), ROOT / "__init__.py", COMPAT]:
        for node in ast.parse(path.read_text()).body:  # module level only: lazy imports are the documented extras
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.startswith(HEAVY)]
    assert not found, found
