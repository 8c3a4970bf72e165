"""A scikit-learn model behind FastAPI, instrumented with otel-ml.

Run it (the OTLP endpoint is a collector that routes to the otel-ml processor, or the processor itself)::

    pip install ".[examples]"          # from the repository root
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc
    export OTEL_SERVICE_NAME=iris-api
    uvicorn examples.serving.model_server:app --port 8000

    curl -s localhost:8000/predict -H 'content-type: application/json' \\
         -d '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "channel": "web"}'
    # -> {"prediction_id": "...", "species": "setosa", "probabilities": {...}}

The response carries the prediction id: whoever learns the truth later (a human reviewer, a downstream system)
sends it with the label to the feedback service (:mod:`examples.serving.feedback_service`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import otel_ml

MODEL_NAME = "iris"
MODEL_VERSION = "1"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class Flower(BaseModel):
    """One request: the measurements of a flower and the channel it came through (a segment)."""

    sepal_length: float
    sepal_width: float
    petal_length: float
    petal_width: float
    channel: str = "web"


class Prediction(BaseModel):
    """The answer, with the id to send feedback for."""

    prediction_id: str
    species: str
    probabilities: dict[str, float]


class BatchPrediction(BaseModel):
    """Answers to a batch request, in request order."""

    predictions: list[Prediction]


def train() -> tuple[LogisticRegression, list[str]]:
    """Fit the model on the iris data set that ships with scikit-learn; returns it and its class names."""
    iris = load_iris()
    names = [str(n) for n in iris.target_names]
    model = LogisticRegression(max_iter=1000).fit(iris.data, np.array(names)[iris.target])
    return model, [str(c) for c in model.classes_]


@asynccontextmanager
async def _flush_on_shutdown(app: FastAPI) -> AsyncIterator[None]:
    """Export what is still queued when the server stops."""
    yield
    otel_ml.force_flush(timeout=5.0)


def create_app(model: LogisticRegression | None = None) -> FastAPI:
    """The FastAPI app; ``model`` defaults to a freshly trained one."""
    if model is None:
        model, classes = train()
    else:
        classes = [str(c) for c in model.classes_]
    monitor = otel_ml.ModelMonitor(MODEL_NAME, version=MODEL_VERSION, task="multiclass", classes=classes,
                                   features=FEATURES, segments=["channel"])

    # The decorator records one ml.prediction event per call (and latency/class/score metrics). The features are
    # the first argument (a dict); the segment comes from the `channel` argument; the result (class, probabilities)
    # is interpreted by default.
    @monitor.instrument(segments=lambda args, kwargs, result: {"channel": kwargs["channel"]})
    def predict_one(features: dict[str, float], *, channel: str) -> tuple[str, np.ndarray]:
        proba = model.predict_proba(np.array([[features[f] for f in FEATURES]]))[0]
        return classes[int(np.argmax(proba))], proba

    app = FastAPI(title="iris model server (otel-ml example)", lifespan=_flush_on_shutdown)

    @app.post("/predict")
    def predict(flower: Flower) -> Prediction:
        features = flower.model_dump(include=set(FEATURES))
        species, proba = predict_one(features, channel=flower.channel)
        prediction_id = otel_ml.current_prediction_id() or ""
        return Prediction(prediction_id=prediction_id, species=species,
                          probabilities=dict(zip(classes, map(float, proba), strict=True)))

    @app.post("/predict/batch")
    def predict_batch(flowers: list[Flower]) -> BatchPrediction:
        # A batch: one predict_proba call, one log_predictions call, one event per row on the wire.
        x = np.array([[getattr(f, name) for name in FEATURES] for f in flowers])
        proba = model.predict_proba(x)
        species = np.asarray(classes)[np.argmax(proba, axis=1)]
        ids = monitor.log_predictions(species, scores=proba, features=x,
                                      segments={"channel": [f.channel for f in flowers]})
        return BatchPrediction(predictions=[
            Prediction(prediction_id=pid, species=str(s), probabilities=dict(zip(classes, map(float, p), strict=True)))
            for pid, s, p in zip(ids, species, proba, strict=True)])

    return app


app = create_app()
