"""The README stays true to the repository: the two commands come first, every path it names exists, and the
Python snippets it shows are valid Python."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
_TOP = ("otel_ml/", "collector-config/", "alerts/", "dashboards/", "grafana/", "examples/", "tests/", "benchmarks/",
        "scripts/", "docs/", ".ci/")


def test_the_two_commands_open_the_section() -> None:
    section = README.split("## The two commands", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].startswith("./scripts/demo.sh")
    assert block[1].startswith("./scripts/test.sh")
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec ./scripts/test.sh")


def test_every_repository_path_named_exists() -> None:
    named = set()
    for token in re.findall(r"`([^`\s]+)`", README) + re.findall(r"\]\(([^)\s]+)\)", README):
        path = token.split("#", 1)[0].rstrip(":,.")
        if path.startswith(_TOP) or path in {"Dockerfile", "docker-compose.yml", "pyproject.toml"}:
            named.add(path)
    assert len(named) > 30
    missing = sorted(p for p in named if not any(ROOT.glob(p)))
    assert not missing, f"README names paths that do not exist: {missing}"


def test_python_snippets_parse() -> None:
    snippets = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert len(snippets) >= 3
    for snippet in snippets:
        ast.parse(snippet)
