"""otel-ml instrumentation SDK: predictions and labels as OpenTelemetry events, at a cost serving does not notice.

Modules: :mod:`.monitor` (``ModelMonitor``), :mod:`.decorator` (``monitor.instrument``), :mod:`.api`
(``configure``/``force_flush``/``shutdown``), :mod:`.context` (``current_prediction_id``), :mod:`.config`
(environment variables), :mod:`.limits` (documented caps), :mod:`.pipeline` (bounded queue, worker, overflow
policy, fork safety), :mod:`.normalize` (result interpretation), :mod:`.wire` (OTLP encoder), :mod:`.sinks`,
:mod:`.transport` (OTLP/HTTP, OTLP/gRPC, retries), :mod:`.aggregate` (client metrics).
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
