"""The otel-ml processor: OTLP logs in, durable prediction-label join, realized quality metrics out.

Run it with ``otel-ml processor --config processor.yaml`` (or ``python -m otel_ml.processor --config ...``).
Modules: :mod:`~otel_ml.processor.config` (YAML config), :mod:`~otel_ml.processor.decode` (OTLP -> columns),
:mod:`~otel_ml.processor.store` (join stores), :mod:`~otel_ml.processor.step` (one transaction per step),
:mod:`~otel_ml.processor.export` (OTel SDK instruments), :mod:`~otel_ml.processor.server` (the app and its
lifecycle) with the receivers :mod:`~otel_ml.processor.grpc_receiver` and :mod:`~otel_ml.processor.http_receiver`
(on :mod:`~otel_ml.processor.httpserver`), :mod:`~otel_ml.processor.security` (TLS, auth),
:mod:`~otel_ml.processor.memory` (memory limiter), :mod:`~otel_ml.processor.stage` (extension point for
estimation/drift stages).

Operating notes:

* **Acknowledged means committed.** A request is answered only after one SQLite transaction committed its records,
  the joins they made and the cumulative aggregates they changed (group commit: the writer thread commits every
  request waiting at that moment together). ``kill -9`` loses at most unacknowledged requests, which the sender
  retries; re-sent records are idempotent (per model and prediction id) within the label window.
* **Restarts continue the series.** Aggregates (counters and histogram buckets) are restored at start; with the same
  ``instance_id`` the exported cumulative series continue from their last value (the OTLP start time is the new
  process start). The ROC-AUC windows are saved in the store every ``AUC_SAVE_INTERVAL_S`` (10 s) and at shutdown, and
  restored at start (after ``kill -9`` they miss at most the last interval's joins). In-memory only: stage gauges,
  refilled by new traffic.
* **Multi-label set sizes at prediction time.** ``ml.multilabel.predicted_labels`` is recorded when a multilabel
  prediction is accepted (every one, labeled or not, once per prediction id), not when its label joins.
* **Too large / undecodable requests are counted** (``ml.processor.records.rejected{ml.reason=too_large|decode_error}``)
  on both receivers; see :mod:`~otel_ml.processor.http_receiver` and :mod:`~otel_ml.processor.grpc_receiver`.
* **Python upgrades.** The SQLite store checks that the running Python reads its rows identically and otherwise
  refuses to start with instructions (``python -m otel_ml.processor.store.migrate``); see
  :mod:`~otel_ml.processor.store.sqlite`.
* **Overload is retryable.** Beyond ``receiver.max_inflight_requests``, above the memory limiter's soft limit and
  while shutting down: gRPC UNAVAILABLE (+ RetryInfo), HTTP 503 + Retry-After, decided before the body is read and
  counted in ``ml.processor.requests.refused{ml.reason}``. Anything unexpected: gRPC INTERNAL / HTTP 500, counted.
* **Loopback by default; TLS, mTLS and tokens when exposed** (``receiver.*.tls`` / ``auth``); SIGTERM/SIGINT drain
  and exit 0 within ``shutdown_grace``.
* **Prometheus names.** The optional scrape endpoint exposes the names the collector's ``prometheus`` exporter would
  (``otel_ml.semconv.prometheus.prom_name``); there, ``job``/``instance`` come from the scrape config (through a
  collector they come from ``service.name``/``service.instance.id``), and every series carries ``otel_scope_*`` labels.
"""
