"""The processor benchmark's workload (also used by tests): realistic 1000-record OTLP log requests.

Each request holds 500 predictions (10 attributes + 5 features: model, version, task, id, class, score, classes,
scores, 2 segments) and 500 labels of the predictions sent two requests earlier, so every label joins.
"""

from __future__ import annotations

import random
import time
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_ml.semconv import attributes as a
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT
from tests.support import otlp_events as ev

PER_REQUEST = 1000


def prediction(i: int, t: int, rng: random.Random | Any = random) -> LogRecord:
    """Prediction ``id-<i>`` at ``t`` (ns)."""
    attrs: dict[str, Any] = {
        a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "2024-06-01", a.ML_TASK: "binary", a.ML_PREDICTION_ID: f"id-{i}",
        a.ML_PREDICTION_VALUE: "1" if i % 3 == 0 else "0", a.ML_PREDICTION_SCORE: rng.random(),
        a.ML_PREDICTION_CLASSES: ["0", "1"], a.ML_PREDICTION_SCORES: [0.4, 0.6],
        "ml.segment.region": rng.choice(["eu", "us", "apac"]), "ml.segment.channel": rng.choice(["web", "app"]),
    }
    for f in range(5):
        attrs[f"ml.feature.f{f}"] = rng.random()
    return ev.log_record(ML_PREDICTION_EVENT, attrs, t)


def label(i: int, t: int) -> LogRecord:
    """Label of prediction ``id-<i>`` at ``t`` (ns)."""
    return ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "fraud", a.ML_PREDICTION_ID: f"id-{i}",
                                          a.ML_LABEL_VALUE: "1" if i % 4 == 0 else "0"}, t)


def benchmark_requests(n: int, rng: random.Random | Any = random) -> list[bytes]:
    """``n`` serialized requests: 500 predictions + 500 labels (of the predictions two requests earlier) each."""
    half = PER_REQUEST // 2
    t = time.time_ns()
    out = []
    for r in range(n):
        recs = []
        for j in range(half):
            i = r * half + j
            recs.append(prediction(i, t, rng))
            recs.append(label(i - 2 * half, t + 1_000_000_000) if r >= 2 else prediction(10**9 + i, t, rng))
        out.append(ev.request(recs).SerializeToString())
    return out
