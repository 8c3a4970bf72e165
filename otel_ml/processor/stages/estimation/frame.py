"""A :class:`~otel_ml.processor.stage.PredictionBatch` as the DataFrame a reference's estimator was fitted on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from otel_ml.processor.stage import PredictionBatch
from otel_ml.reference.artifact import ReferenceArtifact
from otel_ml.semconv.attributes import Task


def batch_frame(batch: PredictionBatch, art: ReferenceArtifact) -> pd.DataFrame:
    """The batch as the DataFrame the artifact's estimator was fitted on (its column names)."""
    est = art.estimator
    assert est is not None
    roles = est.roles_
    n = len(batch)
    cols: dict[str, Any] = {}
    if roles.is_classification or roles.task == Task.MULTILABEL:
        if roles.task == Task.MULTILABEL:
            cols[roles.y_pred] = list(batch.value_lists) if batch.value_lists is not None else [[]] * n
        else:
            cols[roles.y_pred] = list(batch.values) if batch.values is not None else [None] * n
        if roles.scores:
            cols.update(_score_columns(batch, roles.scores, list(roles.classes)))
    else:
        cols[roles.y_pred] = np.asarray(batch.values if batch.values is not None else np.full(n, np.nan), dtype=float)
    for name in roles.features:
        values = batch.features.get(name)
        cols[name] = pd.Series(values if values is not None else [None] * n, dtype=object)
    frame = pd.DataFrame(cols, index=range(n))
    for name in roles.features:  # numeric features typed as numbers, as in the reference
        if name not in est.encoder_.categories:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def _score_columns(batch: PredictionBatch, score_cols: tuple[str, ...], classes: list[str]) -> dict[str, np.ndarray]:
    n = len(batch)
    matrix = np.full((n, len(classes)), np.nan)
    if batch.score_matrix is not None and batch.classes is not None:
        index = {c: j for j, c in enumerate(batch.classes)}
        for k, cls in enumerate(classes):
            j = index.get(cls)
            if j is not None:
                matrix[:, k] = batch.score_matrix[:, j]
    if len(classes) == 2 and batch.task == Task.BINARY and batch.scores is not None:
        # Binary: ml.prediction.score is P(the last of the record's classes). The reference's positive class is its
        # last class; a record whose classes are the other way round ([positive, negative] of the reference) says
        # P(reference negative), and one with classes the reference does not know cannot be read. Without classes
        # on the record the score is taken as P(reference positive).
        pos = np.asarray(batch.scores, dtype=float)
        record_positive = batch.classes[-1] if batch.classes else classes[1]
        if record_positive == classes[0]:
            pos = 1.0 - pos
        elif record_positive != classes[1]:
            pos = np.full(n, np.nan)
        fill = np.isnan(matrix[:, 1]) & np.isfinite(pos)
        matrix[fill, 1] = pos[fill]
        matrix[fill, 0] = 1.0 - pos[fill]
    if len(score_cols) == 1:
        return {score_cols[0]: matrix[:, -1]}
    return {col: matrix[:, k] for k, col in enumerate(score_cols)}
