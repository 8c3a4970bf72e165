"""Generated dashboards: up to date, deterministic, structurally sound, only known series."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from otel_ml import promql as q
from otel_ml.dashboarding import generate
from otel_ml.grafana_uids import FLEET_DASHBOARD_UID, MODEL_DASHBOARD_UID, SELF_DASHBOARD_UID
from otel_ml.semconv.prometheus import all_series_names
from tests.support import promql_checks as checks
from tests.support.procs import ROOT

GENERATED = sorted((ROOT / "dashboards" / "generated").glob("*.json"))
RULES = ROOT / "alerts" / "otel-ml.rules.yaml"


def known_series() -> set[str]:
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}
    return all_series_names() | recorded | q.HOST_SERIES | {"ALERTS"}


def _load(uid: str) -> dict[str, Any]:
    for path in GENERATED:
        d = json.loads(path.read_text())
        if d["uid"] == uid:
            return d
    raise AssertionError(f"no generated dashboard with uid {uid}")


def test_generated_json_is_up_to_date() -> None:
    assert generate.main(["--check"]) == 0, "run: python -m otel_ml.dashboarding.generate"


def test_generation_is_deterministic() -> None:
    assert generate.outputs() == generate.outputs()
    for path, text in generate.outputs().items():
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n", path


def test_three_dashboards_with_unique_uids() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in GENERATED]
    assert sorted(uids) == sorted([MODEL_DASHBOARD_UID, FLEET_DASHBOARD_UID, SELF_DASHBOARD_UID])


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_structure(path) -> None:
    assert checks.problems(json.loads(path.read_text()), known_series()) == []


def test_model_overview_has_the_story() -> None:
    d = _load(MODEL_DASHBOARD_UID)
    names = {v["name"] for v in d["templating"]["list"]}
    assert {"model", "version", "segment"} <= names
    titles = {p["title"] for p in checks.panels(d)}
    for wanted in ["Accuracy", "Macro F1", "Regression error (MAE, RMSE)", "Ranking quality (MRR, precision@k)",
                   "Per-class precision / recall / F1", "Accuracy by segment", "Label coverage", "Label delay",
                   "Unseen classes", "Predictions per sample (multilabel)", "Prediction distribution",
                   "Feature drift", "Share of traffic in weak segments", "Samples to relabel", "Request rate",
                   "Latency", "Error rate", "CPU of the serving process", "Memory of the serving process",
                   "Host CPU", "Host memory used"]:
        assert wanted in titles, wanted
    accuracy = next(p for p in checks.panels(d) if p["title"] == "Accuracy")
    legends = [t["legendFormat"] for t in accuracy["targets"]]
    assert any(x.startswith("baseline") for x in legends) and any(x.startswith("interval") for x in legends)
    assert any(a["name"] == "Version changes" for a in d["annotations"]["list"])


def test_fleet_links_to_the_model_overview() -> None:
    text = json.dumps(_load(FLEET_DASHBOARD_UID))
    assert f"/d/{MODEL_DASHBOARD_UID}?var-model=" in text


def _unsummed(expr: str) -> list[str]:
    """rate()/increase() calls not directly inside ``sum [by (...)] (...)``."""
    return [expr[max(0, mt.start() - 60):mt.end() + 40] for mt in re.finditer(r"\b(?:rate|increase)\(", expr)
            if not re.search(r"sum(?: by \([^)]*\))? \($", expr[:mt.start()])]


def test_replica_counters_are_always_summed() -> None:
    """Every windowed counter is summed across series first: several processor replicas must add up."""
    exprs = [e for path in GENERATED for e in checks.expressions(json.loads(path.read_text()))]
    exprs += [checks.Expression(r.get("record") or r["alert"], r["expr"])
              for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for e in exprs:
        assert _unsummed(e.expr) == [], e.where
    assert _unsummed("rate(x_total[5m])") and not _unsummed("sum by (a) (rate(x_total[5m]))")


def test_checks_catch_problems() -> None:
    """The checker is honest: it reports each kind of problem it claims to detect."""
    target = {"expr": 'rate(nope_total{ml_model_name=~"$undefined"}[5m])', "refId": "A",
              "datasource": {"uid": "other"}}
    bad = {"uid": "x", "panels": [
        {"id": 1, "title": "a", "type": "timeseries", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
         "datasource": {"uid": "prometheus"}, "targets": [target]},
        {"id": 1, "title": "b", "type": "timeseries", "gridPos": {"x": 6, "y": 4, "w": 12, "h": 8},
         "datasource": {"uid": "prometheus"}, "targets": []},
    ], "templating": {"list": []}}
    text = "\n".join(checks.problems(bad, known_series()))
    for fragment in ["not unique", "overlap", "target without", "$undefined", "unknown series nope_total",
                     "no targets"]:
        assert fragment in text, fragment
