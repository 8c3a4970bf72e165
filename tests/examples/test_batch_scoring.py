"""The batch-scoring example, end to end on the wire: one event per row with the business key as id."""

from __future__ import annotations

from examples import batch_scoring
from otel_ml.semconv import attributes as a
from otel_ml.semconv import events
from tests.support.otlp_sink import OtlpSink


def test_batch_scoring_logs_every_row_and_the_labels() -> None:
    with OtlpSink() as sink:
        assert batch_scoring.main(["--endpoint", sink.grpc_endpoint]) == 0
        records = sink.wait_for_log_records(150 + 75)
    preds = [r for r in records if r.record.event_name == events.ML_PREDICTION_EVENT]
    labels = [r for r in records if r.record.event_name == events.ML_LABEL_EVENT]
    assert len(preds) == 150 and len(labels) == 75
    pred_ids = {r.attributes[a.ML_PREDICTION_ID] for r in preds}
    assert pred_ids == {f"order-{i:05d}" for i in range(150)}
    assert {r.attributes[a.ML_PREDICTION_ID] for r in labels} <= pred_ids
    assert {r.attributes[f"{a.ML_SEGMENT_PREFIX}site"] for r in preds} == {"north", "south"}
    assert len({r.record.time_unix_nano for r in preds}) == 1  # the scoring time of the batch
    assert {r.resource.get("service.name") for r in records} == {"iris-batch-job"}
