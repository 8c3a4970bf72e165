"""Realized quality: the additive sums of joined predictions per task, and the label delay.

Called by the :class:`~otel_ml.processor.step.Processor` inside the step's transaction. Everything here is a
counter or a histogram (Prometheus windows and sums them across replicas); the one quantity that does not decompose,
ROC-AUC, is returned as inputs for :mod:`~otel_ml.processor.auc_window`. A joined row whose label does not fit its
prediction's task is not counted here but as a ``task_mismatch`` rejection.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from operator import eq, itemgetter

import numpy as np

from otel_ml.processor.aggregates import Step
from otel_ml.processor.auc_window import AucUpdate
from otel_ml.processor.records import (
    L_LIST,
    L_NUM,
    L_REL,
    L_STR,
    L_TS,
    MODEL,
    P_AUX,
    P_LIST,
    P_NUM,
    P_STR,
    P_TS,
    SCORE,
    SEGMENT,
    TASK,
    VERSION,
    Row,
)
from otel_ml.quality import classification_sums, multilabel_sums, ranking_sums, regression_sums
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Outcome, RejectReason, Task

_GROUP_KEY = itemgetter(MODEL, VERSION, SEGMENT, TASK)
_PREDICTION_TIME = itemgetter(P_TS)
_LABEL_CLASS = itemgetter(L_STR)
_PREDICTED_CLASS = itemgetter(P_STR)
_SCORE = itemgetter(SCORE)
_POSITIVE_CLASS = itemgetter(P_AUX)
_LABEL_TIME = itemgetter(L_TS)
_OUTCOMES = (Outcome.TP, Outcome.FP, Outcome.FN)


def segment_attrs(model: str, version: str, segment: str, cls: str | None) -> dict[str, str]:
    """Metric attributes of a row group: model, version, and the segment and class when set."""
    d = {a.ML_MODEL_NAME: model, a.ML_MODEL_VERSION: version}
    if segment:
        d[a.ML_SEGMENT] = segment
    if cls is not None:
        d[a.ML_CLASS] = cls
    return d


class RealizedQuality:
    """Adds the realized-quality sums of rows to a step; stateless apart from the configured ranking cut-offs."""

    def __init__(self, ranking_k: Sequence[int]) -> None:
        self.ks = ranking_k

    def joined(self, rows: list[Row], step: Step, rejected: Counter[str], auc_updates: list[AucUpdate]) -> None:
        """Label delay and quality sums of joined ``rows``; binary scored joins are appended to ``auc_updates``.

        Rows whose label does not fit their task are counted in ``rejected`` (``task_mismatch``), nowhere else.
        """
        groups: dict[tuple[str, str, str, str], list[Row]] = defaultdict(list)
        for key, r in zip(map(_GROUP_KEY, rows), rows, strict=True):
            groups[key].append(r)
        delays: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for (model, version, _, _), grp in groups.items():
            delays[(model, version)].extend(grp)
        for (model, version), grp in delays.items():
            n = len(grp)
            arr = np.maximum(np.fromiter(map(_LABEL_TIME, grp), np.float64, n)
                             - np.fromiter(map(_PREDICTION_TIME, grp), np.float64, n), 0.0)
            step.record_many(m.LABEL_DELAY, arr, step.attrs({a.ML_MODEL_NAME: model, a.ML_MODEL_VERSION: version}))
        for (model, version, segment, task), grp in groups.items():
            base = segment_attrs(model, version, segment, None)
            if task in Task.CLASSIFICATION:
                ok = grp if None not in map(_LABEL_CLASS, grp) else [r for r in grp if r[L_STR] is not None]
                self._classification(ok, base, step, auc_updates if task == Task.BINARY else None)
            elif task == Task.REGRESSION:
                ok = [r for r in grp if r[L_NUM] is not None and math.isfinite(r[L_NUM])]
                self._regression(ok, base, step)
            elif task == Task.MULTILABEL:
                ok = [r for r in grp if r[L_LIST] is not None]
                self._multilabel(ok, base, step)
            else:
                ok = [r for r in grp if r[L_LIST] is not None]
                self._ranking(ok, base, step)
            if len(ok) != len(grp):
                rejected[RejectReason.TASK_MISMATCH] += len(grp) - len(ok)

    @staticmethod
    def set_sizes(preds: Sequence[Row], step: Step) -> None:
        """``ml.multilabel.predicted_labels`` of newly accepted multilabel predictions, at prediction time.

        Recorded when the prediction is first accepted (duplicates and re-sent requests excluded by the store), so
        the average covers all traffic, labeled or not, and does not wait for the label delay.
        """
        sizes: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for r in preds:
            if r[TASK] == Task.MULTILABEL:
                sizes[(r[MODEL], r[VERSION], r[SEGMENT])].append(len(json.loads(r[P_LIST])))
        for (model, version, segment), ns in sizes.items():
            step.record_many(m.MULTILABEL_PREDICTED_LABELS, np.asarray(ns, dtype=np.float64),
                             step.attrs(segment_attrs(model, version, segment, None)))

    def _classification(self, rows: list[Row], base: dict[str, str], step: Step,
                        auc_updates: list[AucUpdate] | None) -> None:
        if not rows:
            return
        y_true = list(map(_LABEL_CLASS, rows))
        sums = classification_sums(y_true, list(map(_PREDICTED_CLASS, rows)))
        attrs = step.attrs(base)
        step.add_raw(m.LABELED_PREDICTIONS.name, attrs, sums.labeled)
        step.add_raw(m.CORRECT_PREDICTIONS.name, attrs, sums.correct)
        self._outcomes(sums.outcomes, base, step)
        if auc_updates is not None:
            scores = list(map(_SCORE, rows))
            if None in scores:
                rows = [r for r in rows if r[SCORE] is not None]
                scores, y_true = list(map(_SCORE, rows)), list(map(_LABEL_CLASS, rows))
            if rows:
                capped = dict(attrs)  # one window per admitted model version: junk versions share `_other`'s
                key = (capped[a.ML_MODEL_NAME], capped[a.ML_MODEL_VERSION])
                auc_updates.append((key, np.asarray(scores, dtype=np.float64),
                                    np.asarray(list(map(eq, y_true, map(_POSITIVE_CLASS, rows))), dtype=bool)))

    @staticmethod
    def _outcomes(outcomes: Mapping[str, list[int]], base: dict[str, str], step: Step) -> None:
        name = m.CLASSIFICATION_OUTCOMES.name
        for cls, counts in outcomes.items():
            for outcome, n in zip(_OUTCOMES, counts, strict=True):
                if n:
                    step.add_raw(name, step.attrs({**base, a.ML_CLASS: cls, a.ML_OUTCOME: outcome}), n)

    @staticmethod
    def _regression(rows: list[Row], base: dict[str, str], step: Step) -> None:
        if not rows:
            return
        s = regression_sums([r[L_NUM] for r in rows], [r[P_NUM] for r in rows])
        attrs = step.attrs(base)
        step.add_raw(m.LABELED_PREDICTIONS.name, attrs, s.labeled)
        step.add_raw(m.REGRESSION_ABSOLUTE_ERROR.name, attrs, s.absolute_error)
        step.add_raw(m.REGRESSION_SQUARED_ERROR.name, attrs, s.squared_error)
        step.add_raw(m.REGRESSION_SIGNED_ERROR.name, attrs, s.signed_error)

    def _multilabel(self, rows: list[Row], base: dict[str, str], step: Step) -> None:
        if not rows:
            return
        s = multilabel_sums([json.loads(r[L_LIST]) for r in rows], [json.loads(r[P_LIST]) for r in rows])
        attrs = step.attrs(base)
        step.add_raw(m.LABELED_PREDICTIONS.name, attrs, s.labeled)
        step.add_raw(m.CORRECT_PREDICTIONS.name, attrs, s.exact)
        self._outcomes(s.outcomes, base, step)

    def _ranking(self, rows: list[Row], base: dict[str, str], step: Step) -> None:
        if not rows:
            return
        rel = [json.loads(r[L_REL]) if r[L_REL] else None for r in rows]
        s = ranking_sums([json.loads(r[P_LIST]) for r in rows], [json.loads(r[L_LIST]) for r in rows], self.ks, rel)
        attrs = step.attrs(base)
        step.add_raw(m.LABELED_PREDICTIONS.name, attrs, s.labeled)
        step.add_raw(m.RANKING_RECIPROCAL_RANK.name, attrs, s.reciprocal_rank)
        for k in self.ks:
            kattrs = step.attrs({**base, a.ML_RANKING_K: str(k)})
            step.add_raw(m.RANKING_PRECISION_AT_K.name, kattrs, s.precision[k])
            step.add_raw(m.RANKING_NDCG_AT_K.name, kattrs, s.ndcg[k])
