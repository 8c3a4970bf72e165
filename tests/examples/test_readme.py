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


def test_python_snippets_run_as_written_in_order() -> None:
    """Every ``python`` block, executed in order in one namespace, does what the text around it says."""
    import otel_ml
    from otel_ml.instrumentation.api import reset
    from tests.support.otlp_sink import any_value

    transport = otel_ml.InMemoryTransport()
    otel_ml.configure(transport=transport, schedule_delay=0.01, metric_interval=3600)
    namespace: dict[str, object] = {"__name__": "readme"}
    try:
        for snippet in re.findall(r"```python\n(.*?)```", README, re.DOTALL):
            exec(compile(snippet, "README.md", "exec"), namespace)  # the README is ours
        assert otel_ml.force_flush(30)
        records = [(r.event_name, {kv.key: any_value(kv.value) for kv in r.attributes})
                   for req in transport.logs() for rl in req.resource_logs for sl in rl.scope_logs
                   for r in sl.log_records]
    finally:
        reset()
    predictions = [attrs for name, attrs in records if name == "ml.prediction"]
    labels = [attrs for name, attrs in records if name == "ml.label"]
    assert len(predictions) == 1 + 150
    single = predictions[0]
    assert single["ml.prediction.id"] == namespace["prediction_id"]
    assert single["ml.prediction.value"] == "setosa" and single["ml.segment.channel"] == "web"
    assert single["ml.feature.petal_length"] == 1.4
    batch = predictions[1:]
    # proba.argmax(1) arrives as class names, never as "0", "1", "2"
    assert {p["ml.prediction.value"] for p in batch} <= {"setosa", "versicolor", "virginica"}
    assert [p["ml.prediction.id"] for p in batch] == [f"order-{i}" for i in range(150)]
    assert {p["ml.segment.site"] for p in batch} == {"berlin"}
    assert labels == [{"ml.model.name": "iris", "ml.prediction.id": namespace["prediction_id"],
                       "ml.label.value": "versicolor"}]
