"""The generated alert rules: up to date, valid for promtool, every alert tested firing and not firing."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from otel_ml.alerting import generate, thresholds
from otel_ml.alerting.rules import alert_specs
from otel_ml.alerting.thresholds import load_thresholds
from otel_ml.errors import ConfigurationError
from otel_ml.semconv.prometheus import all_series_names
from tests.support.procs import ROOT, require_binary
from tests.support.promql_checks import metric_names

RULES = ROOT / "alerts" / "otel-ml.rules.yaml"
TESTS = sorted((ROOT / "alerts" / "tests").glob("*.test.yaml"))
AM_EXAMPLE = ROOT / "alerts" / "alertmanager.example.yaml"


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_generated_files_are_up_to_date() -> None:
    assert generate.main(["--check"]) == 0, "run: python -m otel_ml.alerting.generate"


def test_promtool_check_rules() -> None:
    out = subprocess.run([require_binary("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass() -> None:
    out = subprocess.run([require_binary("promtool"), "test", "rules", *map(str, TESTS)], capture_output=True,
                         text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr


def test_every_alert_has_a_firing_and_a_not_firing_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                (firing if t.get("exp_alerts") else silent).add(t["alertname"])
    names = {r["alert"] for r in _rules() if "alert" in r}
    assert names - firing == set(), "alerts without a firing test"
    assert names - silent == set(), "alerts without a not-firing test"


def test_every_alert_has_severity_annotations_and_a_runbook_section() -> None:
    readme = (ROOT / "alerts" / "README.md").read_text().lower()
    for rule in (r for r in _rules() if "alert" in r):
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url", "dashboard"}
        assert "$value" in rule["annotations"]["description"], rule["alert"]
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert f"### {anchor}" in readme or f"## {anchor}" in readme, f"no runbook section for {rule['alert']}"


def test_rules_reference_only_semconv_series_and_recorded_names() -> None:
    rules = _rules()
    recorded = {r["record"] for r in rules if "record" in r}
    known = all_series_names() | recorded
    for rule in rules:
        for name in metric_names(rule["expr"]):
            assert name in known, f"{name} in {rule.get('record') or rule.get('alert')} is not an otel-ml series"


def test_amtool_accepts_the_alertmanager_example() -> None:
    out = subprocess.run([require_binary("amtool"), "check-config", str(AM_EXAMPLE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load(AM_EXAMPLE.read_text())
    kinds = {key for r in config["receivers"] for key in r if key.endswith("_configs")}
    assert kinds >= {"pagerduty_configs", "opsgenie_configs", "slack_configs", "webhook_configs"}


def test_grafana_alerting_mirrors_the_prometheus_alerts() -> None:
    grafana = yaml.safe_load(generate.GRAFANA_OUT.read_text())
    rules = grafana["groups"][0]["rules"]
    prom = [r for r in _rules() if "alert" in r]
    assert [r["title"] for r in rules] == [r["alert"] for r in prom]
    for g, p in zip(rules, prom, strict=True):
        assert g["data"][0]["model"]["expr"] == p["expr"]
        assert g["labels"]["severity"] == p["labels"]["severity"]
        assert g["execErrState"] in {"Error", "Alerting", "OK"}
        assert "$values.B.Value" in g["annotations"]["description"]
    assert len({r["uid"] for r in rules}) == len(rules)
    assert all(len(r["uid"]) <= 40 for r in rules)


@pytest.mark.parametrize(("raw", "message"), [
    ({"defaults": {"nope": 1}}, "unknown threshold 'nope'"),
    ({"models": {"churn": {"quality_tolerance": 0.05}}}, "'quality_tolerance' was retired.*set quality_min_effect"),
    ({"defaults": {"quality_min_effect": "high"}}, "must be a number"),
    ({"defaults": {"quality_min_effect": 2}}, "outside"),
    ({"defaults": {"false_alarms_per_month": 0}}, "outside"),
    ({"models": {"fraud": {"latency_slo_seconds": 0.3}}}, "not a bucket bound"),
    ({"models": {"fraud": {"processor_reject_ratio": 0.1}}}, "processor-wide"),
    ({"other": {}}, "unknown keys"),
])
def test_invalid_threshold_config_is_rejected(raw: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_thresholds(raw)


def test_threshold_overrides_exclude_the_model_from_the_default() -> None:
    config = load_thresholds({"models": {"fraud.v2": {"quality_min_effect": 0.01}}})
    rules = [r for r in thresholds.threshold_rules(config) if r["record"] == "model:ml_quality_min_effect:threshold"]
    assert rules[0] == {"record": "model:ml_quality_min_effect:threshold", "expr": "vector(0.01)",
                        "labels": {"ml_model_name": "fraud.v2"}}
    assert 'ml_model_name!~"fraud\\\\.v2"' in rules[1]["expr"]
    assert rules[1]["expr"].startswith("0.02 + 0 * ")


def test_a_false_alarm_budget_or_z_override_gives_the_model_its_own_z_per_family_and_window() -> None:
    config = load_thresholds({"models": {"strict": {"false_alarms_per_month": 0.1}, "fixed": {"z": 5}}})
    rules = [r for r in thresholds.threshold_rules(config) if r["record"] == "model:ml_quality_z7d:threshold"]
    z = {r.get("labels", {}).get("ml_model_name", "*"): float(r["expr"].split("vector(")[-1].split(")")[0]
                                                              if "vector(" in r["expr"] else r["expr"].split(" ")[0])
         for r in rules}
    assert z["fixed"] == 5.0
    assert z["strict"] > z["*"] > 3.0  # a smaller budget needs more standard errors
    assert 'ml_model_name!~"fixed|strict"' in rules[-1]["expr"]


def test_alert_names_are_unique_per_severity() -> None:
    specs = alert_specs(load_thresholds(None))
    keys = [(s.name, s.severity) for s in specs]
    assert len(keys) == len(set(keys))


def test_config_file_example_loads() -> None:
    config, runbook, grafana = generate.load_config(ROOT / "alerts" / "config.yaml")
    assert runbook.startswith("https://") and grafana.startswith("http")
    assert config.value("quality_min_effect", "fraud") == 0.01
    assert config.value("quality_min_effect", "other") == 0.02

