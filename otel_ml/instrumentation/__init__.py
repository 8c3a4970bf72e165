"""otel-ml instrumentation SDK: predictions and labels as OpenTelemetry events, at a cost serving does not notice.

Modules, by job:

* public API: :mod:`.monitor` (``ModelMonitor``), :mod:`.decorator` (``monitor.instrument``), :mod:`.api`
  (``configure``/``force_flush``/``shutdown``), :mod:`.context` (``current_prediction_id``), :mod:`.ids`;
* caller side -> worker: :mod:`.records` (typed records the caller queues), :mod:`.export_queue` (bounded queue,
  worker thread, overflow policy, shutdown), :mod:`.state` (the process-wide queue), :mod:`.factory` (settings ->
  queue, sink, transport), :mod:`.fork` (fork safety), :mod:`.config` (environment variables), :mod:`.limits`;
* records -> events: :mod:`.convert` (dispatch per record kind), :mod:`.interpret` (default reading of results),
  :mod:`.rows` (a batch cut into rows), :mod:`.normalize` (event attributes), :mod:`.values` (capped values),
  :mod:`.fastbatch` (column-wise encoding);
* events -> wire: :mod:`.sinks` (OTLP or the app's SDK providers), :mod:`.wire` (OTLP log encoder),
  :mod:`.wire_metrics` (client metrics encoder), :mod:`.wire_read` (responses, console), :mod:`.aggregate` (client
  metrics), :mod:`.transport` (OTLP/HTTP, OTLP/gRPC, retries).

Run-time dependencies: ``opentelemetry-api`` (1.12 to the newest 1.x) and numpy; grpcio for ``protocol="grpc"``
(``otel-ml[grpc]``), imported only then. Private OpenTelemetry names only through :mod:`otel_ml.compat`.
"""

from otel_ml.instrumentation.api import configure, force_flush, shutdown
from otel_ml.instrumentation.context import current_prediction_id, current_prediction_ids
from otel_ml.instrumentation.errors import ConfigurationError, OtelMLError
from otel_ml.instrumentation.ids import PredictionIds
from otel_ml.instrumentation.monitor import ModelMonitor
from otel_ml.instrumentation.transport import ConsoleTransport, InMemoryTransport

__all__ = [
    "ConfigurationError",
    "ConsoleTransport",
    "InMemoryTransport",
    "ModelMonitor",
    "OtelMLError",
    "PredictionIds",
    "configure",
    "current_prediction_id",
    "current_prediction_ids",
    "force_flush",
    "shutdown",
]
