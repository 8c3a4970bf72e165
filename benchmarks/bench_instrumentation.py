"""Hot-path cost of the instrumentation SDK, side by side with the plain OpenTelemetry SDK path, in one run.

Paths measured (each sends real OTLP/HTTP to a discard receiver in a separate process, so the receiver's CPU is
not counted):

* ``plain SDK``: what an application would write by hand: ``uuid4`` id, ``Logger.emit`` of an ``ml.prediction``
  event with 10 attributes, a ``Counter.add`` (3 attributes) and a ``Histogram.record`` per prediction, through
  LoggerProvider + BatchLogRecordProcessor + OTLPLogExporter and a MeterProvider.
* ``otel-ml fast``: ``monitor.log_prediction`` with 5 features (also inside an active span, whose trace/span ids
  are then put on the event, and through the ``@monitor.instrument`` decorator); the caller appends to a bounded
  deque, the worker hand-encodes OTLP and aggregates the metrics.
* ``otel-ml batch``: ``monitor.log_predictions`` of 1000 rows (5 features as a DataFrame, 2-class scores).
* ``gzip on``: the same with ``compression="gzip"`` (the rest of the paths send uncompressed).
* ``otel-ml sdk mode``: events through the app's LoggerProvider (``configure(mode="sdk")``), from the worker.
* ``otel-ml no-op``: nothing configured.

Figures per prediction: ``caller median`` is the median wall time of individual calls (timer overhead
subtracted); ``caller CPU`` is the caller thread's CPU time / predictions; ``background CPU`` is the process CPU
time minus the caller thread's, over the loop and the flush that exports everything (worker/exporter threads);
``total`` is their sum. Queues are sized so that nothing is dropped (the SDK's batch processor would otherwise
drop silently and look cheaper). ``uuid4().hex`` is timed as a load calibration (2.3 µs on an idle machine of this
kind). Every path runs ``--repeat`` rounds (default 3, interleaved) and each figure is the median over the rounds,
because the machine's load drifts between paths. Run: ``.venv/bin/python benchmarks/bench_instrumentation.py
[--n 20000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import otel_ml
from otel_ml.instrumentation.api import reset
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.events import ML_PREDICTION_EVENT

DISCARD_SERVER = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *args): pass
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()
    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(s.server_address[1], flush=True)
    s.serve_forever()
""")

FEATURES = {"amount": 12.5, "country": "FR", "new_user": True, "items": 3, "account_age_days": 420.0}


@dataclass
class Result:
    """Per-prediction figures of one path, in microseconds."""

    name: str
    caller_median: float
    caller_cpu: float
    background_cpu: float
    uuid_us: float = 0.0
    """Median ``uuid4().hex`` time measured right before this path: the machine's load at that moment."""

    @property
    def total(self) -> float:
        return self.caller_cpu + self.background_cpu


def _timer_overhead() -> float:
    samples = []
    for _ in range(20000):
        t0 = time.perf_counter_ns()
        samples.append(time.perf_counter_ns() - t0)
    return float(statistics.median(samples))


def _uuid_median(n: int = 5000) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        uuid.uuid4().hex  # noqa: B018 - timed expression
        samples.append(time.perf_counter_ns() - t0)
    return float(statistics.median(samples))


def _run(name: str, call: Callable[[], Any], n: int, flush: Callable[[], Any], per: int = 1) -> Result:
    """Time ``n`` calls individually, then flush; ``per`` predictions per call."""
    overhead = _timer_overhead()
    uuid_us = (_uuid_median() - overhead) / 1000
    samples = [0] * n
    pc = time.perf_counter_ns
    cpu0, proc0 = time.thread_time_ns(), time.process_time_ns()
    for i in range(n):
        t0 = pc()
        call()
        samples[i] = pc() - t0
    caller_cpu = time.thread_time_ns() - cpu0
    flush()
    proc = time.process_time_ns() - proc0
    caller_cpu_after = time.thread_time_ns() - cpu0
    background = proc - caller_cpu_after
    preds = n * per
    median = (statistics.median(samples) - overhead) / per / 1000
    return Result(name, median, caller_cpu / preds / 1000, max(0, background) / preds / 1000, uuid_us)


def _discard_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", DISCARD_SERVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def _sdk_providers(endpoint: str, queue: int) -> tuple[Any, Any]:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": "bench"})
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"),
                                                        max_queue_size=queue, max_export_batch_size=512))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
                                           export_interval_millis=600_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    return lp, mp


def bench_plain_sdk(endpoint: str, n: int) -> Result:
    lp, mp = _sdk_providers(endpoint, queue=n + 1)
    logger = lp.get_logger("bench")
    meter = mp.get_meter("bench")
    counter = meter.create_counter(m.CLIENT_PREDICTIONS.name)
    hist = meter.create_histogram(m.CLIENT_INFERENCE_DURATION.name, unit="s",
                                  explicit_bucket_boundaries_advisory=list(m.DURATION_BUCKETS_S))

    def call() -> None:
        pid = uuid.uuid4().hex
        logger.emit(event_name=ML_PREDICTION_EVENT, attributes={
            a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "1", a.ML_TASK: "binary", a.ML_PREDICTION_ID: pid,
            a.ML_PREDICTION_VALUE: "fraud", a.ML_PREDICTION_SCORE: 0.93,
            **{a.ML_FEATURE_PREFIX + k: v for k, v in list(FEATURES.items())[:4]}})
        counter.add(1, {a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "1", a.ML_CLASS: "fraud"})
        hist.record(0.0012, {a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "1"})

    result = _run("plain SDK (emit + counter + histogram)", call, n, lambda: lp.force_flush(120_000))
    lp.shutdown()
    mp.shutdown()
    return result


def _monitor() -> otel_ml.ModelMonitor:
    return otel_ml.ModelMonitor("fraud", version="1", task="binary", classes=["legit", "fraud"])


def _flush() -> None:
    assert otel_ml.force_flush(120)


def bench_fast(endpoint: str, n: int) -> list[Result]:
    otel_ml.configure(endpoint=endpoint, queue_size=2 * n + 10, schedule_delay=0.2, metric_interval=600)
    mon = _monitor()
    out = [_run("otel-ml fast: log_prediction, 5 features",
                lambda: mon.log_prediction("fraud", scores=0.93, features=FEATURES), n, _flush)]

    from opentelemetry.sdk.trace import TracerProvider

    with TracerProvider().get_tracer("bench").start_as_current_span("inference"):
        out.append(_run("otel-ml fast: log_prediction in an active span",
                        lambda: mon.log_prediction("fraud", scores=0.93, features=FEATURES), n, _flush))

    otel_ml.configure(endpoint=endpoint, queue_size=2 * n + 10, schedule_delay=0.2, metric_interval=600,
                      compression="gzip")
    out.append(_run("otel-ml fast: log_prediction, gzip on",
                    lambda: mon.log_prediction("fraud", scores=0.93, features=FEATURES), n, _flush))
    otel_ml.configure(endpoint=endpoint, queue_size=2 * n + 10, schedule_delay=0.2, metric_interval=600)

    # The same calls with the worker idle until the flush: its cost without competing with the caller for the GIL
    # (as when a server's request threads wait on I/O), and one large export request.
    otel_ml.configure(endpoint=endpoint, queue_size=2 * n + 10, batch_size=2 * n + 10, schedule_delay=3600,
                      metric_interval=3600)
    out.append(_run("otel-ml fast: same, worker runs after the loop",
                    lambda: mon.log_prediction("fraud", scores=0.93, features=FEATURES), n, _flush))
    otel_ml.configure(endpoint=endpoint, queue_size=2 * n + 10, schedule_delay=0.2, metric_interval=600)

    @mon.instrument
    def predict(features: dict[str, Any]) -> tuple[str, float]:
        return ("fraud", 0.93)

    out.append(_run("otel-ml fast: @instrument, 5 features", lambda: predict(FEATURES), n, _flush))
    plain = _run("(undecorated function call)", lambda: ("fraud", 0.93), n, lambda: None)
    out[-1].caller_median -= plain.caller_median
    out[-1].caller_cpu -= plain.caller_cpu
    out[-1].name += " (minus bare call)"
    return out


def bench_batch(endpoint: str, batches: int, rows: int = 1000) -> list[Result]:
    otel_ml.configure(endpoint=endpoint, queue_size=batches + 10, schedule_delay=0.2, metric_interval=600)
    mon = _monitor()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.random(rows), "country": rng.choice(["FR", "DE", "US"], rows),
                          "new_user": rng.random(rows) > 0.5, "items": rng.integers(0, 9, rows),
                          "account_age_days": rng.random(rows) * 1000})
    proba = rng.random((rows, 2))
    matrix = rng.random((rows, 5))
    out = [_run(f"otel-ml batch: {rows} rows, DataFrame, per row",
                lambda: mon.log_predictions(scores=proba, features=frame), batches, _flush, per=rows)]
    out.append(_run(f"otel-ml batch: {rows} rows, ndarray, per row",
                    lambda: mon.log_predictions(scores=proba, features=matrix), batches, _flush, per=rows))
    otel_ml.configure(endpoint=endpoint, queue_size=batches + 10, schedule_delay=0.2, metric_interval=600,
                      compression="gzip")
    out.append(_run(f"otel-ml batch: {rows} rows, DataFrame, gzip on",
                    lambda: mon.log_predictions(scores=proba, features=frame), batches, _flush, per=rows))
    return out


def bench_sdk_mode(endpoint: str, n: int) -> Result:
    lp, mp = _sdk_providers(endpoint, queue=n + 1)
    otel_ml.configure(mode="sdk", logger_provider=lp, meter_provider=mp, queue_size=2 * n + 10,
                      schedule_delay=0.2)
    mon = _monitor()

    def flush() -> None:
        _flush()
        lp.force_flush(120_000)

    result = _run("otel-ml sdk mode: log_prediction, 5 features",
                  lambda: mon.log_prediction("fraud", scores=0.93, features=FEATURES), n, flush)
    otel_ml.shutdown()
    lp.shutdown()
    mp.shutdown()
    return result


def bench_noop(n: int) -> Result:
    reset()
    mon = _monitor()
    return _run("otel-ml no-op (nothing configured)",
                lambda: mon.log_prediction("fraud", scores=0.93, features=FEATURES), n, lambda: None)


def calibration(n: int = 20000) -> tuple[float, float]:
    """Median µs of ``uuid4().hex`` and of a deque append, timed like the paths."""
    from collections import deque

    q: deque[tuple[int, ...]] = deque()
    u = _run("uuid4", lambda: uuid.uuid4().hex, n, lambda: None)
    d = _run("deque.append", lambda: q.append((1, 2, 3)), n, lambda: None)
    return u.caller_median, d.caller_median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="single predictions per path")
    parser.add_argument("--batches", type=int, default=100, help="1000-row batches")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every path (figures: medians)")
    args = parser.parse_args(argv)

    server, endpoint = _discard_server()
    runs: list[list[Result]] = []
    try:
        uuid_us, deque_us = calibration()
        for _ in range(args.repeat):
            runs.append([bench_plain_sdk(endpoint, args.n), *bench_fast(endpoint, args.n),
                         *bench_batch(endpoint, args.batches), bench_sdk_mode(endpoint, args.n), bench_noop(args.n)])
    finally:
        reset()
        server.terminate()
        server.wait()

    rows = [_median_result(same) for same in zip(*runs, strict=True)]
    plain = rows[0]
    print(f"calibration: uuid4().hex {uuid_us:.2f} µs (2.3 µs on an idle machine of this kind), "
          f"deque.append {deque_us:.3f} µs; n={args.n} single predictions, {args.batches}x1000-row batches; "
          f"median of {args.repeat} rounds per figure")
    head = (f"{'path':<52} {'caller median':>13} {'caller CPU':>10} {'background':>10} {'total CPU':>9} "
            f"{'x cheaper (caller/total)':>25} {'uuid4 then':>10} {'total min-max':>15}")
    print(head)
    print("-" * len(head))
    for r, same in zip(rows, zip(*runs, strict=True), strict=True):
        ratio = f"{plain.caller_median / r.caller_median:6.1f} / {plain.total / r.total:6.1f}" \
            if r is not plain and r.caller_median > 0 and r.total > 0 else ""
        spread = f"{min(x.total for x in same):.2f}-{max(x.total for x in same):.2f}"
        print(f"{r.name:<52} {r.caller_median:>10.2f} µs {r.caller_cpu:>7.2f} µs {r.background_cpu:>7.2f} µs "
              f"{r.total:>6.2f} µs {ratio:>25} {r.uuid_us:>7.2f} µs {spread:>15}")
    print("(µs per prediction; batch rows per row; background = worker/exporter threads' CPU incl. encoding;\n"
          " 'uuid4 then': uuid4().hex timed right before the row, 2.3 µs on an idle machine: the load at that time;\n"
          " each figure is the median over the rounds; total min-max: the spread of the total over the rounds)")
    return 0


def _median_result(same: tuple[Result, ...]) -> Result:
    """Per-figure median of one path over the rounds."""
    def med(get: Callable[[Result], float]) -> float:
        return float(statistics.median(get(r) for r in same))

    return Result(same[0].name, med(lambda r: r.caller_median), med(lambda r: r.caller_cpu),
                  med(lambda r: r.background_cpu), med(lambda r: r.uuid_us))


if __name__ == "__main__":
    raise SystemExit(main())
