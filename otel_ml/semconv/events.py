"""Event names of otel-ml.

An event is an OTLP ``LogRecord`` whose ``event_name`` (proto field 12) is set. Its attributes are the keys in
:mod:`otel_ml.semconv.attributes`; its ``trace_id``/``span_id`` link it to the inference span when one is active;
its ``time_unix_nano`` is the moment of the prediction (or of the label). The body is unused.
"""

from typing import Final

ML_PREDICTION_EVENT: Final = "ml.prediction"
"""One prediction of one model for one sample.

Required attributes: ``ml.model.name``, ``ml.task``, ``ml.prediction.id`` and the predicted value for the task
(``ml.prediction.value`` for binary/multiclass/regression, ``ml.prediction.values`` for multilabel/ranking).
Optional: ``ml.model.version``, scores, ``ml.feature.*``, ``ml.segment.*``, and the label attributes when the ground
truth is known at once (a *pair*: the processor joins it immediately).
"""

ML_LABEL_EVENT: Final = "ml.label"
"""The ground truth for an earlier (or later: labels may overtake) prediction, joined by ``ml.prediction.id``.

Required attributes: ``ml.model.name``, ``ml.prediction.id`` and ``ml.label.value`` (or ``ml.label.values`` for
multilabel/ranking). May come from any process: no version, task or features are needed.
"""

ML_EVENT_NAMES: Final = frozenset({ML_PREDICTION_EVENT, ML_LABEL_EVENT})
"""Every event name the otel-ml processor consumes (the collector routes exactly these)."""

EVENT_SCHEMA_VERSION: Final = "1"
"""Version of the event schema, sent as the instrumentation scope attribute ``ml.schema.version``."""

SCHEMA_VERSION_ATTRIBUTE: Final = "ml.schema.version"
"""Instrumentation scope attribute carrying :data:`EVENT_SCHEMA_VERSION` (on events and client metrics)."""

INSTRUMENTATION_SCOPE: Final = "otel_ml"
"""Instrumentation scope name of every event and in-process metric otel-ml emits."""
