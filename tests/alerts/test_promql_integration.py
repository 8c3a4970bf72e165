"""Every PromQL expression of the dashboards and rules against a real Prometheus; alerts through a real Alertmanager.

Data flows through the real pipeline: an instrumented serving app (:mod:`tests.alerts.serving_app`, real
``ml.client.*`` metrics and events) and a batch job send OTLP to the OCB-built collector running the shipped
``collector-config/gateway.yaml``; it routes the events to the real otel-ml processor, whose metrics come back over
OTLP and leave, with the app's metrics and the real hostmetrics, through the collector's ``prometheus`` exporter,
which Prometheus scrapes (``honor_labels`` as in the compose config). The processor runs its estimation stage on
references fitted in the test with ``otel-ml reference fit`` (:mod:`tests.alerts.scenario`), with a 5 s label window,
so baselines, estimated quality, drift, unseen classes, weak-segment traffic, relabel samples, expired predictions
and orphaned labels are real; the serving app exports its own ``process.cpu.time`` / ``process.memory.usage``
through the OTel SDK. What the pipeline cannot produce in a short test (overload, evictions, export failures,
client drops) is served by
:mod:`tests.alerts.synthetic`, generated from the semconv specs; which series came from where is printed.

* coverage: with a degraded fleet, every dashboard target and annotation (variables set to "All") and every
  recording rule returns data;
* degradation: a model whose real accuracy halves fires ``MLModelQualityBelowBaseline`` in the real Prometheus,
  which the real Alertmanager delivers to a webhook receiver in this test, with value, runbook and dashboard; the
  serving app's real errors and slow calls burn its SLO budgets; every alert fires and is delivered except the two
  that need hours of history (covered by ``promtool test rules``);
* healthy: the same stack with a healthy model fires nothing and delivers nothing.

The rules are the shipped ones; only ``for:`` is shortened (``otel_ml.alerting.generate.render(for_override=...)``).
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from otel_ml import promql as q
from otel_ml.alerting import generate
from otel_ml.semconv import metrics as m
from otel_ml.semconv.prometheus import all_series_names, prom_name
from tests.alerts import scenario
from tests.alerts.synthetic import Mode, SyntheticExporter, host_samples, samples
from tests.integration.collector_stack import GATEWAY, Collector, Processor
from tests.processor.conftest import prediction_event
from tests.support import otlp_events as ev
from tests.support import promql_checks as checks
from tests.support.procs import ROOT, Alertmanager, ManagedProcess, Prometheus, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GENERATED = sorted((ROOT / "dashboards" / "generated").glob("*.json"))
SUBSTITUTIONS = {"$__rate_interval": "15s", "$__range": "1h", "$window": "1h", "$model": ".*", "$version": ".*",
                 "$segment": ".*", "$service": ".*", "$host": ".*"}
NEEDS_HISTORY = {"MLModelLabelsStopped", "MLModelLabelCoverageLow"}
"""Alerts comparing with the week before (or 6h of silence): fired by promtool tests and the 30-day story tests
(``tests/alerts/test_story.py``), not reachable in a real-time test."""
REAL_BUT_ZERO = {m.PROCESSOR_SERIES_OVERFLOW.name}
"""Gauges the real processor always exports, at 0 unless the OTel SDK itself overflows (which needs churn beyond
twice metrics.series_limit): the degraded scenario serves them synthetically, under the synthetic job."""
VERSION = "v1"
WARMUP = 12
"""Pairs sent first so every series exists before the traffic that increase() must see."""
N = WARMUP + 200
LABEL_WINDOW = "5s"
"""The processor's label window: predictions without a label expire, labels without a prediction are orphaned."""
UNLABELED = 160
"""Degraded: predictions that never get a label (and orphaned labels) per batch, for the first model."""


# --- webhook receiver ------------------------------------------------------------------------------------------------
class Webhook:
    """An Alertmanager webhook receiver: collects the JSON notifications POSTed to it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.notifications: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def alerts(self) -> list[dict[str, Any]]:
        return [alert for n in self.notifications for alert in n["alerts"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the stack -------------------------------------------------------------------------------------------------------
@dataclass
class Stack:
    """Collector (shipped gateway config) + processor + serving app + synthetic exporter + Prometheus (+ AM)."""

    collector: Collector
    proc: Processor
    app: ManagedProcess
    exporter: SyntheticExporter
    prom: Prometheus
    am: Alertmanager | None = None
    webhook: Webhook | None = None
    synthetic: list[str] = field(default_factory=list)
    real: list[str] = field(default_factory=list)

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.prom.query(expr)


def _start(tmp: Path, references: Path, *, alerting: bool, mode: Mode) -> Stack:
    port = free_port()
    collector = Collector(tmp, (GATEWAY,), env={"OTEL_ML_PROCESSOR_ENDPOINT": f"127.0.0.1:{port}"}).start()
    proc = Processor(tmp, collector.grpc_endpoint, instance_id="replica-a", port=port,
                     store={"label_window": LABEL_WINDOW, "expire_interval": "1s"})
    config = yaml.safe_load(proc.config_path.read_text())  # + the estimation stage on the fitted references
    config["reference"] = {"directory": str(references), "reload_interval": "1s"}
    proc.config_path.write_text(yaml.safe_dump(config))
    proc.start()
    app = ManagedProcess("serving-app", [sys.executable, "-m", "tests.alerts.serving_app", collector.grpc_endpoint,
                                         "240", mode], tmp, cwd=ROOT).start()
    exporter = SyntheticExporter().start()
    webhook = am = None
    rules = ROOT / "alerts" / "otel-ml.rules.yaml"
    if alerting:
        webhook = Webhook()
        am = Alertmanager(tmp, {
            "route": {"receiver": "test", "group_by": ["alertname", "ml_model_name"], "group_wait": "1s",
                      "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "test", "webhook_configs": [{"url": webhook.url, "send_resolved": False}]}],
        }).start()
        rules = tmp / "otel-ml.rules.yaml"  # the shipped rules with for: 0s
        rules.write_text(yaml.safe_dump(generate.render(for_override="0s"), sort_keys=False))
    # honor_labels as in examples/compose/prometheus.yml: job/instance are the exporting service's, not the collector's
    prom = Prometheus(tmp, {"otelcol": [collector.prometheus_target], "synthetic": [exporter.target]},
                      rule_files=[rules], alertmanager=f"127.0.0.1:{am.port}" if am else None,
                      honor_labels=True).start()
    return Stack(collector, proc, app, exporter, prom, am, webhook)


def _stop(stack: Stack) -> None:
    for stop in (stack.prom.stop, stack.exporter.stop, stack.app.stop, stack.proc.stop, stack.collector.stop,
                 *(x.stop for x in (stack.am, stack.webhook) if x is not None)):
        stop()


def _send(stack: Stack, records: list[Any]) -> None:
    """Events to the collector, as a batch-scoring job would send them."""
    with grpc.insecure_channel(stack.collector.grpc_endpoint) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        for i in range(0, len(records), 250):
            stub.Export(ev.request(records[i:i + 250], service_name="batch-scoring"), timeout=30)


SERVING = ("serving", "multiclass")
"""The model of :mod:`tests.alerts.serving_app` (real client metrics)."""


def _feed(stack: Stack, models: list[tuple[str, str, int]], mode: Mode) -> None:
    """Real events for ``(model, task, wrong_every)`` through the collector; synthetic series for what is missing.

    Healthy traffic replays each model's evaluation set; degraded traffic drifts (see :mod:`tests.alerts.scenario`)
    and, for the first model, adds predictions that never get a label and labels of unknown predictions.
    """
    # A counter's first sample is its baseline for increase(): send a warm-up pair per model, let Prometheus scrape
    # it, then the rest in batches a scrape apart, as live traffic would arrive.
    n = scenario.EVAL_ROWS if mode == "healthy" else N
    batches = {model: scenario.events(model, task, n, wrong_every, mode, VERSION)
               for model, task, wrong_every in models}
    malformed = [prediction_event("", model, task, "x") for model, task, _ in models]  # no id: rejected
    first, first_task, _ = models[0]
    unlabeled = (scenario.unlabeled(first, first_task, 0, 5 * UNLABELED, VERSION) if mode == "degraded" else [])
    per_batch = 2 * UNLABELED
    _send(stack, [r for recs in batches.values() for r in recs[:2 * WARMUP]] + malformed[:1] + unlabeled[:per_batch])
    labeled = prom_name(m.LABELED_PREDICTIONS)
    wait_until(lambda: all(stack.prom.query_value(f'sum({labeled}{{ml_model_name="{x}"}})') == WARMUP
                           for x, _, _ in models), timeout=90, what="warm-up joins scraped")
    chunk = (n - WARMUP) * 2 // 4  # four contiguous chunks of pairs: each holds the same share of wrong predictions
    for i in range(4):
        start = 2 * WARMUP + i * chunk
        _send(stack, [r for recs in batches.values() for r in recs[start:start + chunk]]
              + unlabeled[(i + 1) * per_batch:(i + 2) * per_batch])
        time.sleep(1.5)
    if mode == "degraded":  # 5% malformed events: the processor rejects and counts them
        sent = sum(len(recs) for recs in batches.values()) + len(unlabeled)
        _send(stack, malformed * (sent // 20 // len(malformed)))
    wait_until(lambda: all(stack.prom.query_value(f'sum({labeled}{{ml_model_name="{x}"}})') == n
                           for x, _, _ in models), timeout=90, what="real joins scraped")
    if unlabeled:
        expected = len(unlabeled) // 2
        for metric in (prom_name(m.EXPIRED_PREDICTIONS), prom_name(m.ORPHANED_LABELS)):
            expr = f'sum({metric}{{ml_model_name="{first}"}})'
            wait_until(functools.partial(lambda e: stack.prom.query_value(e) == expected, expr), timeout=60,
                       what=f"{expr} after the label window")
    client = prom_name(m.CLIENT_INFERENCE_DURATION) + "_count"
    wait_until(lambda: bool(stack.query(f'{client}{{ml_model_name="{SERVING[0]}"}}')), timeout=60,
               what="client metrics of the serving app scraped")
    wait_until(lambda: bool(stack.query(q.PROCESS_MEMORY_USAGE)), timeout=60,
               what="process metrics of the serving app scraped")
    names = {r["metric"]["__name__"] for r in stack.query('group by (__name__) ({__name__=~".+", job!="synthetic"})')}
    missing = []
    for spec in m.METRICS.values():
        base = prom_name(spec)
        produced = {f"{base}_bucket", f"{base}_count"} <= names if spec.instrument == "histogram" else base in names
        if mode == "degraded" and spec.name in REAL_BUT_ZERO:
            produced = False  # the real processor reports it at 0: its alert needs the synthetic degraded value
        if not produced and spec is m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS:
            continue  # optional (the estimated-quality rules fall back to the estimate): synthetic would mix sources
        (stack.real if produced else stack.synthetic).append(spec.name)
        if not produced:
            missing.append(spec)
    synthetic_models = [(x, VERSION, t) for x, t, _ in models] + [(SERVING[0], VERSION, SERVING[1])]
    # A task without `otel-ml reference fit` support would get its baselines here (none at present).
    no_reference = [(x, VERSION, t) for x, t, _ in models if t not in scenario.REFERENCE_TASKS]
    extra = samples([m.REFERENCE_METRIC], no_reference, mode) if m.REFERENCE_METRIC not in missing else []
    if extra:
        stack.synthetic.append(f"{m.REFERENCE_METRIC.name} (models {sorted(x for x, _, _ in no_reference)})")
    host = [s for s in host_samples(mode) if s.name not in names]
    filled = samples(missing, synthetic_models, mode)
    served = {s.name for s in filled}
    absent = [spec.name for spec in missing if not served & _series_names(spec)]  # no model of its task here
    stack.synthetic = [x for x in stack.synthetic if x not in absent]
    stack.exporter.set_samples(filled + extra + host)
    real_host = sorted(q.HOST_SERIES & names)
    print(f"\nreal series: {sorted(stack.real)} + {real_host}\nsynthetic series: {sorted(stack.synthetic)} + "
          f"{sorted({s.name for s in host})}\nnot applicable to this scenario's models: {sorted(absent)}")
    growing = sorted({s.name for s in stack.exporter.samples() if s.counter and s.rate > 0})
    wait_until(lambda: all((stack.prom.query_value(f"sum(increase({x}[1h]))") or 0) > 0 for x in growing),
               timeout=60, what="synthetic counters scraped twice")


def _series_names(spec: m.MetricSpec) -> set[str]:
    base = prom_name(spec)
    return {f"{base}_bucket", f"{base}_sum", f"{base}_count"} if spec.instrument == "histogram" else {base}


def _recorded(stack: Stack) -> list[str]:
    """Recording rules that must have data in a real-time test: not those reading the week before (``offset``)."""
    rules = [r for g in yaml.safe_load((ROOT / "alerts" / "otel-ml.rules.yaml").read_text())["groups"]
             for r in g["rules"] if "record" in r]
    history = {r["record"] for r in rules if " offset " in r["expr"]}
    while True:  # and the rules that read those
        more = {r["record"] for r in rules if r["record"] not in history and checks.metric_names(r["expr"]) & history}
        if not more:
            break
        history |= more
    return sorted({r["record"] for r in rules} - history)


def _settle(done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for rule evaluations to catch up; the assertions that follow report what is still missing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        time.sleep(0.5)


def _numbers(result: list[dict[str, Any]]) -> list[float]:
    """The finite values of a query result (NaN from 0/0 is not data)."""
    return [v for v in (float(r["value"][1]) for r in result) if math.isfinite(v)]


def _substitute(expr: str) -> str:
    for var, value in sorted(SUBSTITUTIONS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


ALL_TASKS = [("animals", "multiclass", 3), ("fraud", "binary", 4), ("eta", "regression", 4),
             ("search", "ranking", 4), ("tagger", "multilabel", 0)]
DEGRADED = [("churn", "multiclass", 1), ("eta", "regression", 2), ("tagger", "multilabel", 0)]
HEALTHY = [("steady", "multiclass", 0)]


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reference artifacts of every model of the scenarios, fitted once with ``otel-ml reference fit``."""
    models = sorted({(x, t) for x, t, _ in ALL_TASKS + DEGRADED + HEALTHY})
    directory, lines = scenario.fit_references(models, tmp_path_factory.mktemp("references"))
    print("\n" + "\n".join(lines))
    return directory


def test_every_dashboard_and_recording_rule_expression_returns_data(tmp_path: Path, references: Path) -> None:
    stack = _start(tmp_path, references, alerting=False, mode="degraded")
    try:
        _feed(stack, ALL_TASKS, "degraded")
        _settle(lambda: not [r for r in _recorded(stack) if not stack.query(r)]
                and bool(stack.query('ALERTS{alertstate="firing"}')))
        empty = [f"record {r}" for r in _recorded(stack) if not _numbers(stack.query(r))]
        exprs = [e for path in GENERATED for e in checks.expressions(json.loads(path.read_text()))]
        seconds = []
        for e in exprs:
            started = time.perf_counter()
            result = stack.query(_substitute(e.expr))
            seconds.append(time.perf_counter() - started)
            if not _numbers(result):
                empty.append(f"{e.where}: {e.expr}")
        with urllib.request.urlopen(f"{stack.prom.url}/metrics", timeout=10) as resp:  # Prometheus' own metrics
            groups = {line.split(";", 1)[1].split('"')[0]: f"{float(line.rsplit(' ', 1)[1]) * 1000:.1f} ms"
                      for line in resp.read().decode().splitlines()
                      if line.startswith("prometheus_rule_group_last_duration_seconds{")}
        print(f"{len(exprs)} dashboard queries, median {statistics.median(seconds) * 1000:.1f} ms, "
              f"max {max(seconds) * 1000:.1f} ms; rule group evaluation: {groups}")
        for path in GENERATED:
            for var, selector, label in checks.variable_queries(json.loads(path.read_text())):
                if selector and not stack.query(f"group by ({label}) ({_substitute(selector)})"):
                    empty.append(f"{path.name} variable {var}: {selector}")
        assert empty == [], "\n".join(empty)
        assert len(exprs) > 60
        assert stack.real, "the real processor produced no series"
    finally:
        _stop(stack)


def test_degradation_fires_through_prometheus_and_alertmanager(tmp_path: Path, references: Path) -> None:
    stack = _start(tmp_path, references, alerting=True, mode="degraded")
    assert stack.webhook is not None
    try:
        # churn: every prediction wrong (accuracy 0 vs 60.5%: significant on 200 labels), drifted, in the weak
        # region, unsure, unseen classes, labels missing; eta: MAE 1.75 against 0.5; tagger: 1.5 labels per sample
        # against 1
        _feed(stack, DEGRADED, "degraded")
        wait_until(lambda: stack.prom.query_value(
            'model_version:ml_accuracy:ratio_rate1h{ml_model_name="churn"}') == 0, timeout=30, what="accuracy 0")

        def delivered() -> list[dict[str, Any]]:
            return [x for x in stack.webhook.alerts() if x["labels"]["alertname"] == "MLModelQualityBelowBaseline"
                    and x["labels"].get("ml_metric") == "accuracy" and x["labels"]["ml_model_name"] == "churn"]

        wait_until(lambda: bool(delivered()), timeout=90, what="MLModelQualityBelowBaseline at the webhook")
        alert = delivered()[0]
        assert alert["status"] == "firing"
        assert alert["labels"]["ml_model_name"] == "churn" and alert["labels"]["severity"] == "critical"
        description = alert["annotations"]["description"]
        assert description.startswith("Realized accuracy of churn v1 is 0.") and "below its evaluation-set baseline" \
            in description and "Likely causes (cause alerts firing now for this model): " in description
        assert alert["annotations"]["runbook_url"].endswith("/alerts/README.md#mlmodelqualitybelowbaseline")
        assert alert["annotations"]["dashboard"].endswith("/d/otel-ml-model?var-model=churn&var-version=v1")

        rules = generate.render(for_override="0s")["groups"][2]["rules"]

        def silent() -> list[str]:
            return [r["alert"] for r in rules if r["alert"] not in NEEDS_HISTORY and not stack.query(r["expr"])]

        _settle(lambda: not silent())  # the recording rules of counters that just started need a few evaluations
        assert silent() == [], f"alert expressions without data in the degraded scenario: {silent()}"
        expected = {r["alert"] for r in rules} - NEEDS_HISTORY

        def firing() -> set[str]:
            return {x["labels"]["alertname"] for x in stack.prom.alerts() if x["state"] == "firing"}

        _settle(lambda: firing() == expected)
        assert firing() == expected
        wait_until(lambda: {x["labels"]["alertname"] for x in stack.webhook.alerts()} == expected, timeout=60,
                   what="every firing alert delivered by Alertmanager")
    finally:
        _stop(stack)


def test_healthy_fleet_fires_nothing(tmp_path: Path, references: Path) -> None:
    stack = _start(tmp_path, references, alerting=True, mode="healthy")
    assert stack.webhook is not None
    try:
        _feed(stack, HEALTHY, "healthy")  # the evaluation set replayed: quality at its baseline, no drift
        needed = ["model_version:ml_accuracy:ratio_rate1h", "model_version:ml_estimated_accuracy:ratio_rate1h",
                  "model_version:ml_inference_slow:ratio_rate5m", "model_version:ml_label_coverage:ratio_rate1d",
                  "model:ml_quality_min_effect:threshold", "model:ml_client_events_dropped:ratio_rate15m"]
        wait_until(lambda: all(stack.query(r) for r in needed), timeout=60, what="rules evaluated on healthy data")
        deadline = time.monotonic() + 10  # ten more evaluations (1s) with for: 0s
        while time.monotonic() < deadline:
            assert [(x["labels"], x["value"]) for x in stack.prom.alerts()] == []
            time.sleep(1)
        assert stack.webhook.notifications == []
    finally:
        _stop(stack)


def test_every_semconv_series_is_covered() -> None:
    """The synthetic exporter can fill any semconv metric (so coverage never silently shrinks)."""
    names = {s.name for s in samples(m.METRICS.values(), [("x", "v1", t) for t in
                                                            ("multiclass", "multilabel", "regression", "ranking")],
                                     "degraded")}
    assert names == all_series_names()
