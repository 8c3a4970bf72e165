"""otel-ml: ML model-quality monitoring on OpenTelemetry, Prometheus and Grafana.

Public API of the instrumentation SDK (see :mod:`otel_ml.instrumentation.monitor` for usage)::

    import otel_ml
    monitor = otel_ml.ModelMonitor("fraud", version="1", task="binary", classes=["legit", "fraud"])

    @monitor.instrument
    def predict(features): ...

    otel_ml.current_prediction_id()            # id of the prediction just made
    monitor.log_label(prediction_id, "fraud")  # ground truth, later, from any process
"""

__version__ = "0.1.0"

from otel_ml.errors import ConfigurationError, OtelMLError
from otel_ml.instrumentation import (
    ConsoleTransport,
    InMemoryTransport,
    ModelMonitor,
    PredictionIds,
    configure,
    current_prediction_id,
    current_prediction_ids,
    force_flush,
    shutdown,
)

__all__ = [
    "ConfigurationError",
    "ConsoleTransport",
    "InMemoryTransport",
    "ModelMonitor",
    "OtelMLError",
    "PredictionIds",
    "__version__",
    "configure",
    "current_prediction_id",
    "current_prediction_ids",
    "force_flush",
    "shutdown",
]
