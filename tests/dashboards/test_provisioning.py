"""Grafana provisioning files: parse, agree with the dashboards and with docker-compose."""

from __future__ import annotations

import json

import yaml

from otel_ml.grafana_uids import DATASOURCE_UID
from tests.support.procs import ROOT

PROVISIONING = ROOT / "grafana" / "provisioning"


def test_datasource_has_the_uid_every_dashboard_uses() -> None:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == "prometheus"


def test_dashboard_provider_reads_the_path_compose_mounts_the_generated_json_at() -> None:
    doc = yaml.safe_load((PROVISIONING / "dashboards" / "otel-ml.yaml").read_text())
    (provider,) = doc["providers"]
    path = provider["options"]["path"]
    compose = ROOT / "docker-compose.yml"
    if compose.exists():
        mounts = [v for s in yaml.safe_load(compose.read_text())["services"].values() for v in s.get("volumes", [])]
        assert f"./dashboards/generated:{path}:ro" in mounts
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False


def test_alerting_provisioning_parses_and_routes_by_severity() -> None:
    rules = yaml.safe_load((PROVISIONING / "alerting" / "otel-ml-rules.yaml").read_text())
    points = yaml.safe_load((PROVISIONING / "alerting" / "otel-ml-contact-points.yaml").read_text())
    assert rules["apiVersion"] == points["apiVersion"] == 1
    for rule in rules["groups"][0]["rules"]:
        assert rule["data"][0]["datasourceUid"] == DATASOURCE_UID
        assert rule["condition"] in {d["refId"] for d in rule["data"]}
    names = {c["name"] for c in points["contactPoints"]}
    types = {r["type"] for c in points["contactPoints"] for r in c["receivers"]}
    assert types == {"pagerduty", "opsgenie", "slack", "webhook"}
    policy = points["policies"][0]
    assert policy["receiver"] in names and all(r["receiver"] in names for r in policy["routes"])
    severities = {m[2] for r in policy["routes"] for m in r.get("object_matchers", [])}
    assert severities == {"critical", "warning"}


def test_generated_dashboards_are_valid_json_with_the_provider_folder() -> None:
    for path in (ROOT / "dashboards" / "generated").glob("*.json"):
        assert json.loads(path.read_text())["tags"] == ["otel-ml"]
