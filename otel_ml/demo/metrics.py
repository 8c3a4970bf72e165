"""Reading otel-ml's metrics back, as a dashboard would: the processor's scrape endpoint or a real Prometheus.

A :class:`Snapshot` holds every ``ml_*`` sample at one moment (cumulative counters, gauges, histogram series) with
its labels, summed over processor replicas and scrape targets. Windowed ratios are differences of two snapshots,
exactly like ``increase()`` in PromQL.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

from otel_ml.semconv.metrics import MetricSpec
from otel_ml.semconv.prometheus import prom_name

Labels = frozenset[tuple[str, str]]
_DROPPED_LABELS = frozenset({"job", "instance", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url",
                             "service_instance_id", "service_name", "exported_job", "exported_instance"})


@dataclass(slots=True)
class Snapshot:
    """All ``ml_*`` samples at one moment: series name -> labels -> value."""

    time: float
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Add a sample (values of equal name and labels are summed: replicas, targets)."""
        key = frozenset((k, v) for k, v in labels.items() if k not in _DROPPED_LABELS and not k.startswith("otel_"))
        series = self.samples.setdefault(name, {})
        series[key] = series.get(key, 0.0) + value

    def select(self, name: str, **match: str) -> Iterable[tuple[dict[str, str], float]]:
        """Samples of series ``name`` whose labels include ``match``."""
        for labels, value in self.samples.get(name, {}).items():
            d = dict(labels)
            if all(d.get(k) == v for k, v in match.items()):
                yield d, value

    def total(self, name: str, **match: str) -> float:
        """Sum of the matching samples (0 when there are none)."""
        return sum(v for _, v in self.select(name, **match))

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        """Matching samples summed by the value of ``label``."""
        out: dict[str, float] = {}
        for d, v in self.select(name, **match):
            out[d.get(label, "")] = out.get(d.get(label, ""), 0.0) + v
        return out

    def maximum(self, name: str, **match: str) -> float | None:
        """Largest matching sample (gauges), or ``None``."""
        values = [v for _, v in self.select(name, **match)]
        return max(values) if values else None


def series(metric: MetricSpec, kind: str = "") -> str:
    """Prometheus series name of a semconv metric (``kind``: ``sum``/``count``/``bucket`` for histograms)."""
    base = prom_name(metric)
    return f"{base}_{kind}" if kind else base


class MetricSource(Protocol):
    """Where snapshots come from."""

    description: str

    def snapshot(self) -> Snapshot:
        """Read every ``ml_*`` sample now."""
        ...


class ScrapeSource:
    """The processor's own Prometheus scrape endpoint (``metrics.prometheus.endpoint``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.description = f"processor scrape endpoint {url}"

    def snapshot(self) -> Snapshot:
        """Scrape ``/metrics`` and parse the text exposition format."""
        with urllib.request.urlopen(self.url, timeout=10) as resp:
            text = resp.read().decode()
        snap = Snapshot(time.time())
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith("ml_"):
                    snap.add(sample.name, sample.labels, float(sample.value))
        return snap


class PrometheusSource:
    """A real Prometheus (which scrapes the collector's ``prometheus`` exporter), through its HTTP query API."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.description = f"Prometheus {self.url}"

    def snapshot(self) -> Snapshot:
        """One instant query for every ``ml_*`` series."""
        query = urllib.parse.urlencode({"query": '{__name__=~"ml_.+"}'})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query failed: {body}")
        snap = Snapshot(time.time())
        for item in body["data"]["result"]:
            labels = dict(item["metric"])
            name = labels.pop("__name__")
            snap.add(name, labels, float(item["value"][1]))
        return snap
