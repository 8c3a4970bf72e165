"""The feedback service: a separate process that learns the truth later and sends it to otel-ml as labels.

It needs no model, no features and no version: only the model name and the prediction id the model server
returned. The otel-ml processor joins each label with its prediction, however late (within its label window) and
in whichever order they arrive::

    export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc
    export OTEL_SERVICE_NAME=iris-feedback
    uvicorn examples.serving.feedback_service:app --port 8001

    curl -s localhost:8001/feedback -H 'content-type: application/json' \\
         -d '{"prediction_id": "<id from /predict>", "species": "versicolor"}'
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

import otel_ml
from examples.serving.model_server import MODEL_NAME


class Feedback(BaseModel):
    """The true species of an earlier prediction."""

    prediction_id: str
    species: str


class FeedbackBatch(BaseModel):
    """Many labels at once (e.g. a nightly export of reviewed cases)."""

    items: list[Feedback]


@asynccontextmanager
async def _flush_on_shutdown(app: FastAPI) -> AsyncIterator[None]:
    """Export what is still queued when the server stops."""
    yield
    otel_ml.force_flush(timeout=5.0)


def create_app() -> FastAPI:
    """The FastAPI app."""
    labels = otel_ml.ModelMonitor(MODEL_NAME)  # a label-only monitor: the model name is all it needs

    app = FastAPI(title="iris feedback service (otel-ml example)", lifespan=_flush_on_shutdown)

    @app.post("/feedback", status_code=202)
    def feedback(item: Feedback) -> dict[str, str]:
        labels.log_label(item.prediction_id, item.species)
        return {"status": "accepted"}

    @app.post("/feedback/batch", status_code=202)
    def feedback_batch(batch: FeedbackBatch) -> dict[str, int]:
        labels.log_labels([i.prediction_id for i in batch.items], [i.species for i in batch.items])
        return {"accepted": len(batch.items)}

    return app


app = create_app()
