"""Prometheus recording and alerting rules of otel-ml, generated from the semantic conventions.

* :mod:`.thresholds`: tunable thresholds (defaults, per-model overrides from ``alerts/config.yaml``).
* :mod:`.rules`: recording rules (``level:metric:operations``) and alert specifications.
* :mod:`.grafana`: the same alerts as Grafana-managed alert provisioning.
* :mod:`.generate`: writes ``alerts/otel-ml.rules.yaml`` and ``grafana/provisioning/alerting/``.
"""
