"""Every collector config that exposes Prometheus names pins the translation the dashboards and rules are built on.

``otel_ml.semconv.prometheus.prom_name`` mirrors ``translation_strategy: UnderscoreEscapingWithSuffixes`` of the
collector's ``prometheus`` and ``prometheus_remote_write`` exporters (v0.159: the default, with
``add_metric_suffixes`` deprecated); pinned, a change of that default cannot rename every series. The integration
tests (``tests/integration/test_collector_configs.py``, ``test_collector_e2e.py``) run these configs in the real
collector and query the names in a real Prometheus.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PINNED = "UnderscoreEscapingWithSuffixes"


def test_prometheus_exporters_pin_the_translation_strategy() -> None:
    checked = []
    for path in sorted((ROOT / "collector-config").rglob("*.yaml")):
        exporters = (yaml.safe_load(path.read_text()) or {}).get("exporters")
        if not isinstance(exporters, dict):  # builder-config.yaml: the OCB manifest lists modules
            continue
        for name, settings in exporters.items():
            if name.split("/")[0] in ("prometheus", "prometheus_remote_write"):
                assert (settings or {}).get("translation_strategy") == PINNED, f"{path.name}: exporter {name}"
                checked.append(f"{path.name}:{name}")
    assert len(checked) >= 3, checked  # gateway (prometheus, remote write), the existing-collector example
