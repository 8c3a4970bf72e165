"""Samples to relabel: per batch, the predictions most worth a human label, written to the relabel file.

Per reason at most :data:`SAMPLES_PER_BATCH`: predicted classes the evaluation set never had, the lowest estimated
correctness below :data:`LOW_CONFIDENCE_P` (regression: an expected absolute error above twice the reference MAE),
and predictions with a feature outside the reference's range or vocabulary. Each written sample is counted in
``ml.relabel.samples``; the file's bound is :class:`~otel_ml.drift.relabel.RelabelSink`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from otel_ml.drift.relabel import DRIFT, LOW_CONFIDENCE, UNSEEN_CLASS, RelabelSink
from otel_ml.processor.stage import MetricSink, PredictionBatch
from otel_ml.reference.artifact import ReferenceArtifact
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m

LOW_CONFIDENCE_P = 0.5
"""Predictions estimated less likely than this to be right are relabel candidates."""
SAMPLES_PER_BATCH = 10
"""At most this many samples per reason and batch."""


def write_relabel_samples(relabel: RelabelSink, batch: PredictionBatch, art: ReferenceArtifact,
                          p: np.ndarray | None, abs_e: np.ndarray | None, unseen_rows: np.ndarray,
                          outside: Mapping[str, np.ndarray], sink: MetricSink) -> None:
    """Chooses the batch's samples (see the module docstring), writes them and counts the written ones by reason.

    Args:
        relabel: Where samples go.
        batch: The predictions.
        art: Their reference (for the MAE limit of regression).
        p: Estimated P(correct) per row, or ``None``.
        abs_e: Expected absolute error per row (regression), or ``None``.
        unseen_rows: Rows that predicted a class the evaluation set never had.
        outside: Feature name -> rows whose value is outside the reference.
        sink: The stage's metric sink.
    """
    chosen: dict[int, tuple[str, str]] = {}
    for i in np.flatnonzero(unseen_rows)[:SAMPLES_PER_BATCH]:
        value = batch.values[i] if isinstance(batch.values, list) else batch.value_lists[i] if batch.value_lists \
            else None
        chosen[int(i)] = (UNSEEN_CLASS, f"predicted class not in the evaluation set: {value!r}")
    if p is not None:
        low = np.flatnonzero(p < LOW_CONFIDENCE_P)
        for i in low[np.argsort(p[low], kind="stable")][:SAMPLES_PER_BATCH]:
            chosen.setdefault(int(i), (LOW_CONFIDENCE, f"estimated correctness {p[i]:.3f}"))
    elif abs_e is not None:
        limit = 2.0 * float(art.metrics.get("mae", math.inf))
        high = np.flatnonzero(abs_e > limit)
        for i in high[np.argsort(-abs_e[high], kind="stable")][:SAMPLES_PER_BATCH]:
            chosen.setdefault(int(i), (LOW_CONFIDENCE, f"expected absolute error {abs_e[i]:.4g} > {limit:.4g}"))
    drifted = 0
    for name, rows in outside.items():
        for i in np.flatnonzero(rows):
            if drifted >= SAMPLES_PER_BATCH:
                break
            if int(i) not in chosen:
                chosen[int(i)] = (DRIFT, f"feature {name}={batch.features[name][i]!r} outside the evaluation set")
                drifted += 1
    if not chosen:
        return
    samples = []
    for i, (reason, detail) in sorted(chosen.items()):
        prediction: Any = (batch.values[i] if batch.values is not None
                           else batch.value_lists[i] if batch.value_lists is not None else None)
        samples.append({
            "timestamp": float(batch.timestamps[i]), "model": batch.model, "version": batch.version,
            "prediction_id": batch.ids[i], "reason": reason, "detail": detail,
            "estimated_correctness": None if p is None else float(p[i]),
            "expected_abs_error": None if abs_e is None else float(abs_e[i]),
            "prediction": prediction, "segment": batch.segments[i] if batch.segments else "",
            "features": {k: v[i] for k, v in batch.features.items()},
        })
    written = relabel.write(samples)
    by_reason: dict[str, int] = {}
    for sample in samples[:written]:
        by_reason[sample["reason"]] = by_reason.get(sample["reason"], 0) + 1
    for reason, count in by_reason.items():
        sink.add(m.RELABEL_SAMPLES, float(count), {a.ML_MODEL_NAME: batch.model, a.ML_REASON: reason})
