"""Grafana-managed alerting provisioning equivalent to the Prometheus alert rules.

For teams that alert from Grafana instead of Prometheus + Alertmanager: every :class:`AlertSpec` becomes a
file-provisioned Grafana rule querying the same Prometheus expression (which already returns only the firing series)
then ``reduce`` (last, non-numbers dropped) and a ``math`` condition true for every returned series. The recording
rules (``alerts/otel-ml.rules.yaml``) must still be loaded in Prometheus: the alerts read them.
"""

from __future__ import annotations

from typing import Any

from otel_ml.alerting.rules import AlertSpec
from otel_ml.grafana_uids import DATASOURCE_UID

FOLDER = "otel-ml"
"""Grafana folder of the provisioned rules (and of the dashboards)."""
_EXPR_UID = "__expr__"


def _duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(text[:-1]) * units[text[-1]]


def grafana_template(text: str) -> str:
    """Prometheus annotation template -> Grafana: ``$value`` is the reduced value of query B."""
    return text.replace("$value", "$values.B.Value")


_CAUSES_HINT = (" Likely causes: the cause alerts firing for the same model (feature or prediction drift, unseen "
                "classes, weak segments, predictions per sample).")
"""Grafana's annotation templates have no ``query``: the Prometheus rule file lists the firing causes instead."""


def grafana_rule(spec: AlertSpec, annotations: dict[str, str]) -> dict[str, Any]:
    """One provisioned Grafana alert rule."""
    uid = f"{spec.name.lower()}-{spec.severity}"[:40]
    annotations = {**annotations, "description": spec.description + (_CAUSES_HINT if spec.causes else "")}
    return {
        "uid": uid,
        "title": spec.name,
        "condition": "C",
        "data": [
            {"refId": "A", "datasourceUid": DATASOURCE_UID, "relativeTimeRange": {"from": 600, "to": 0},
             "model": {"refId": "A", "expr": spec.expr, "instant": True, "range": False,
                       "datasource": {"type": "prometheus", "uid": DATASOURCE_UID}}},
            {"refId": "B", "datasourceUid": _EXPR_UID,
             "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last",
                       "settings": {"mode": "dropNN"}, "datasource": {"type": "__expr__", "uid": _EXPR_UID}}},
            {"refId": "C", "datasourceUid": _EXPR_UID,
             "model": {"refId": "C", "type": "math", "expression": "$B == $B",
                       "datasource": {"type": "__expr__", "uid": _EXPR_UID}}},
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": spec.for_,
        "labels": {"severity": spec.severity, **spec.extra_labels},
        "annotations": {k: grafana_template(v) for k, v in annotations.items()},
    }


def grafana_alerting(specs: list[AlertSpec], rendered: list[dict[str, Any]], interval: str = "1m") -> dict[str, Any]:
    """The provisioning file: one rule group holding every alert."""
    rules = [grafana_rule(spec, r["annotations"]) for spec, r in zip(specs, rendered, strict=True)]
    uids = [r["uid"] for r in rules]
    if len(set(uids)) != len(uids):
        raise ValueError(f"duplicate Grafana rule uids: {sorted(uids)}")
    return {"apiVersion": 1, "groups": [
        {"orgId": 1, "name": "otel-ml", "folder": FOLDER, "interval": interval, "rules": rules},
    ]}
