"""Generate ``dashboards/generated/*.json`` from ``dashboards/*.dashboard.py`` (grafanalib convention).

Usage::

    python -m otel_ml.dashboarding.generate            # (re)write the JSON
    python -m otel_ml.dashboarding.generate --check    # exit 1 if a committed file is out of date

Each source defines a module-level ``dashboard``; the output is deterministic (sorted keys, 2-space indent).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
from pathlib import Path
from typing import Any

from otel_ml.dashboarding.panels import to_json

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "dashboards"
OUT = SOURCES / "generated"
SUFFIX = ".dashboard.py"


def load(path: Path) -> Any:
    """The ``dashboard`` object of one ``*.dashboard.py`` file."""
    name = "otel_ml_dashboard_" + path.name[: -len(SUFFIX)].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dashboard


def outputs(sources: Path = SOURCES) -> dict[Path, str]:
    """Every generated JSON file and its content (grafanalib's stray prints are kept off stdout)."""
    result = {}
    for path in sorted(sources.glob(f"*{SUFFIX}")):
        with contextlib.redirect_stdout(io.StringIO()):
            text = to_json(load(path))
        result[OUT / (path.name[: -len(SUFFIX)] + ".json")] = text
    return result


def main(argv: list[str] | None = None) -> int:
    """Write (or ``--check``) the generated dashboards."""
    parser = argparse.ArgumentParser(prog="python -m otel_ml.dashboarding.generate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    args = parser.parse_args(argv)
    files = outputs()
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    orphans = sorted(set(OUT.glob("*.json")) - set(files)) if OUT.exists() else []
    if args.check:
        if stale or orphans:
            print("out of date (run python -m otel_ml.dashboarding.generate): "
                  + ", ".join(map(str, [*stale, *orphans])), file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.write_text(files[path])
    for path in orphans:
        path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
