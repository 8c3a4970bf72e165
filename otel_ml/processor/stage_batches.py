"""Rows of one step -> the columnar :class:`~otel_ml.processor.stage.PredictionBatch` objects stages receive."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from otel_ml.processor.decode import Extra
from otel_ml.processor.records import (
    L_LIST,
    L_NUM,
    L_REL,
    L_STR,
    L_TS,
    MODEL,
    P_LIST,
    P_NUM,
    P_STR,
    P_TS,
    SCORE,
    SEGMENT,
    TASK,
    VERSION,
    Row,
    prediction_id,
)
from otel_ml.processor.stage import PredictionBatch
from otel_ml.semconv.attributes import Task


def to_batches(rows: Sequence[Row], extras: Sequence[Extra | None]) -> list[PredictionBatch]:
    """Group rows into columnar :class:`PredictionBatch` objects by (model, version, task, classes).

    ``extras`` (features, per-class scores, classes) are aligned with ``rows``; ``None`` where the step has none
    (a pending prediction joined later). Joined rows (label half set) fill the batch's label fields.
    """
    groups: dict[tuple[str, str, str, tuple[str, ...] | None], list[int]] = defaultdict(list)
    for i, (r, e) in enumerate(zip(rows, extras, strict=True)):
        groups[(r[MODEL], r[VERSION], r[TASK], e[2] if e else None)].append(i)
    out: list[PredictionBatch] = []
    for (model, version, task, classes), idx in groups.items():
        rs = [rows[i] for i in idx]
        es = [extras[i] for i in idx]
        joined = rs[0][L_TS] is not None
        values: Any
        if task == Task.REGRESSION:
            values = np.asarray([r[P_NUM] for r in rs], dtype=np.float64)
        elif task in Task.CLASSIFICATION:
            values = [r[P_STR] for r in rs]
        else:
            values = None
        scores = np.asarray([np.nan if r[SCORE] is None else r[SCORE] for r in rs], dtype=np.float64)
        matrix = None
        if classes is not None and any(e is not None and e[1] is not None for e in es):
            matrix = np.full((len(rs), len(classes)), np.nan)
            for j, e in enumerate(es):
                if e is not None and e[1] is not None:
                    matrix[j] = e[1]
        features: dict[str, list[Any]] = {}
        for j, e in enumerate(es):
            if e is None:
                continue
            for name, v in e[0].items():
                col = features.get(name)
                if col is None:
                    col = features[name] = [None] * len(rs)
                col[j] = v
        batch = PredictionBatch(
            model=model, version=version, task=task, classes=classes, ids=[prediction_id(r) for r in rs],
            timestamps=np.asarray([r[P_TS] for r in rs], dtype=np.float64), values=values, scores=scores,
            score_matrix=matrix,
            value_lists=[json.loads(r[P_LIST]) for r in rs] if task in (Task.MULTILABEL, Task.RANKING) else None,
            features=features, segments=[r[SEGMENT] for r in rs])
        if joined:
            if task == Task.REGRESSION:
                batch.labels = np.asarray([np.nan if r[L_NUM] is None else r[L_NUM] for r in rs], dtype=np.float64)
            elif task in Task.CLASSIFICATION:
                batch.labels = [r[L_STR] if r[L_STR] is not None else "" for r in rs]
            else:
                batch.label_lists = [json.loads(r[L_LIST]) if r[L_LIST] else [] for r in rs]
                if task == Task.RANKING:
                    batch.relevance = [json.loads(r[L_REL]) if r[L_REL] else [1.0] * len(ll)
                                       for r, ll in zip(rs, batch.label_lists, strict=True)]
            batch.label_timestamps = np.asarray([r[L_TS] for r in rs], dtype=np.float64)
        out.append(batch)
    return out
