"""Fitting a reference artifact from a labeled evaluation set (the work behind ``otel-ml reference fit``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from otel_ml.drift.distribution import CATEGORICAL, NUMERIC, Distribution
from otel_ml.errors import DataError
from otel_ml.estimation import EstimationError, create_estimator
from otel_ml.estimation import metrics as em
from otel_ml.estimation._inputs import (
    FeatureEncoder,
    as_class_strings,
    class_codes,
    prepare_classification,
    resolve_roles,
    score_mapping,
)
from otel_ml.estimation.multilabel import label_set
from otel_ml.estimation.orientation import check_orientation
from otel_ml.quality.ranking import ranking_sums, reciprocal_rank
from otel_ml.reference import variability as var
from otel_ml.reference.artifact import ReferenceArtifact
from otel_ml.reference.weak_segments import find_weak_segments
from otel_ml.semconv.attributes import QualityMetric, Task

_logger = logging.getLogger(__name__)

SET_SIZE = "set_size"
SUPPORTED_TASKS = (Task.BINARY, Task.MULTICLASS, Task.MULTILABEL, Task.REGRESSION, Task.RANKING)
RANKING_K = (1, 5, 10)
"""Default k of the ranking baselines (the processor's default ``metrics.ranking_k``)."""
MAX_KNOWN_ITEMS = 20000
"""Ranking: item vocabularies up to this size are kept as the known set (unseen-item counts); larger catalogues
keep none (every item would count as unseen on a catalogue the evaluation set only samples)."""
AT_K = "@"
"""Separator of a ranking metric and its k in ``metrics.json`` keys (``precision_at_k@5``): the stage exports it as
``ml.metric`` = ``precision_at_k`` with ``ml.ranking.k`` = ``5``."""


class ReferenceFitError(DataError):
    """The evaluation set or the column roles cannot make a reference."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Reads a ``.parquet`` or ``.csv`` evaluation set.

    Raises:
        ReferenceFitError: Unknown extension or unreadable file.
    """
    p = Path(path)
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if p.suffix.lower() == ".csv":
            return pd.read_csv(p)
    except (OSError, ValueError) as exc:
        raise ReferenceFitError(f"cannot read {p}: {exc}") from exc
    raise ReferenceFitError(f"{p}: expected a .parquet or .csv file")


def parse_label_set(value: Any) -> list[str]:
    """A multilabel cell as a list of strings: a list/array, a JSON list, or a ``|``-separated string."""
    return label_set(value)


def fit_reference(
    frame: pd.DataFrame,
    *,
    model: str,
    task: str,
    target: str,
    prediction: str,
    version: str = "",
    scores: Sequence[str] | Mapping[Any, str] | None = None,
    features: Sequence[str] = (),
    segments: Sequence[str] = (),
    classes: Sequence[str] | None = None,
    method: str = "auto",
    random_state: int = 0,
    ranking_k: Sequence[int] = RANKING_K,
    positive_class: Any = None,
) -> ReferenceArtifact:
    """Builds the reference artifact of ``model`` from its labeled evaluation set.

    Args:
        frame: One row per evaluated prediction.
        model: Model name (``ml.model.name``).
        task: ``binary``, ``multiclass``, ``multilabel``, ``regression`` or ``ranking``.
        target: True value column (multilabel: list or ``a|b`` string column; ranking: the relevant items, same
            forms).
        prediction: Predicted value column (multilabel: list or ``a|b`` string column; ranking: the ranked item
            ids, best first, same forms).
        version: Model version the reference is for (empty: any version).
        scores: Score columns (binary: P(positive class) or one per class; multiclass and multilabel: one per
            class, aligned with ``classes``), or a ``{class: column}`` mapping (the classes come from it when
            ``classes`` is not given).
        features: Feature columns (as sent in ``ml.feature.<name>``).
        segments: Segment columns (as sent in ``ml.segment.<dimension>``).
        classes: Class order (default: sorted union of target and prediction values).
        positive_class: Binary: the class a single score column is the probability of, and whose F1 and ROC AUC
            are the baselines (default: the last of ``classes``, else the last of the sorted class strings; with a
            one-entry score mapping, its class). The reference is refused when the scores rank it below the other
            class (see :mod:`otel_ml.estimation.orientation`).
        method: Estimator (``auto``, ``cbpe``, ``atc``, ``learned``; regression ``dle``; multilabel
            ``multilabel``).
        random_state: Seed of every random choice (fits are deterministic).
        ranking_k: Ranking: the k of the precision@k and NDCG@k baselines (metrics keys ``precision_at_k@<k>``,
            ``ndcg_at_k@<k>``, plus ``mrr``). Ranking references have no correctness estimator; their baselines,
            ranked-list-length distribution (``set_size``), item distribution and known items (unseen-item counts)
            drive the stage.

    Raises:
        ReferenceFitError: Unsupported task, missing columns, an empty evaluation set, scores read the wrong way
            round (the message says how to fix the column or the class order), an estimator the evaluation set
            cannot support (the message says why).
    """
    if task not in SUPPORTED_TASKS:
        raise ReferenceFitError(f"task must be one of {SUPPORTED_TASKS}; got {task!r}")
    try:
        score_list, classes, positive = score_mapping(scores, classes, positive_class)
    except EstimationError as exc:
        raise ReferenceFitError(str(exc)) from exc
    score_cols = list(score_list)
    needed = [target, prediction, *score_cols, *features, *segments]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ReferenceFitError(f"evaluation set has no column(s) {missing}; columns: {list(frame.columns)[:30]}")
    frame = frame[frame[target].notna() & frame[prediction].notna()].reset_index(drop=True)
    if len(frame) == 0:
        raise ReferenceFitError("evaluation set has no row with both a target and a prediction")
    schema: dict[str, Any] = {"prediction": prediction, "target": target, "scores": score_cols,
                              "features": list(features), "segments": list(segments), "classes": []}
    distributions: dict[str, Any] = {
        "features": {name: Distribution.fit(name, frame[name].to_numpy(dtype=object)) for name in features},
    }
    binned: dict[str, tuple[Distribution, np.ndarray, str]] = {
        name: (dist, frame[name].to_numpy(dtype=object), "feature")
        for name, dist in distributions["features"].items() if name not in segments
    }
    estimator = None
    if task == Task.MULTILABEL:
        truth = [parse_label_set(v) for v in frame[target]]
        pred = [parse_label_set(v) for v in frame[prediction]]
        schema["classes"] = classes_list = list(classes) if classes else sorted({c for s in truth + pred for c in s})
        metrics, quality = _multilabel_metrics(truth, pred, classes_list)
        quality_metric, higher = QualityMetric.EXACT_MATCH, True
        sizes = np.asarray([len(s) for s in pred], dtype=float)
        variability = var.classification_variability(quality, *var.label_outcomes(truth, pred, classes_list),
                                                     exact_match=True, set_sizes=sizes, random_state=random_state)
        distributions[SET_SIZE] = Distribution.fit(SET_SIZE, sizes, kind=NUMERIC)
        distributions["prediction"] = Distribution.fit("prediction", [c for s in pred for c in s], kind=CATEGORICAL,
                                                       max_categories=max(30, len(classes_list)))
        binned[SET_SIZE] = (distributions[SET_SIZE], sizes.astype(object), "set_size")
        if score_cols and len(score_cols) != len(classes_list):
            raise ReferenceFitError(f"{len(score_cols)} --scores columns for {len(classes_list)} labels "
                                    f"{classes_list}: give one score column per label, in --classes order")
        estimator = _fit_estimator(frame, task, method, random_state, y_true=target, y_pred=prediction,
                                   scores=score_cols or None, features=list(features), classes=classes_list)
    elif task == Task.RANKING:
        relevant = [parse_label_set(v) for v in frame[target]]
        ranked = [parse_label_set(v) for v in frame[prediction]]
        items = sorted({c for s in ranked for c in s})
        schema["classes"] = items if len(items) <= MAX_KNOWN_ITEMS else []
        metrics, quality = _ranking_metrics(ranked, relevant, ranking_k)
        quality_metric, higher = QualityMetric.MRR, True
        sizes = np.asarray([len(s) for s in ranked], dtype=float)
        variability = var.ranking_variability(quality, sizes)
        distributions[SET_SIZE] = Distribution.fit(SET_SIZE, sizes, kind=NUMERIC)
        distributions["prediction"] = Distribution.fit("prediction", [c for s in ranked for c in s], kind=CATEGORICAL)
        binned[SET_SIZE] = (distributions[SET_SIZE], sizes.astype(object), "set_size")
    elif task == Task.REGRESSION:
        y = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=float)
        yhat = pd.to_numeric(frame[prediction], errors="coerce").to_numpy(dtype=float)
        err = yhat - y
        quality = np.abs(err)
        metrics = {QualityMetric.MAE: float(np.nanmean(quality)),
                   QualityMetric.RMSE: float(np.sqrt(np.nanmean(err**2)))}
        quality_metric, higher = QualityMetric.MAE, False
        variability = var.regression_variability(err)
        distributions["prediction"] = Distribution.fit("prediction", yhat, kind=NUMERIC)
        estimator = _fit_estimator(frame, task, method, random_state, y_true=target, y_pred=prediction,
                                   features=list(features))
    else:
        try:
            roles = resolve_roles(frame, y_true=target, y_pred=prediction, scores=score_cols or None,
                                  features=features, classes=classes, task=task, positive_class=positive)
            score_cols = list(roles.scores)  # binary: in [negative, positive] order
            orientation = check_orientation(prepare_classification(frame, roles, FeatureEncoder()),
                                            class_codes(frame[target].to_numpy(), roles.classes), roles)
        except EstimationError as exc:
            raise ReferenceFitError(str(exc)) from exc
        schema["classes"] = list(roles.classes)
        schema["scores"] = score_cols
        schema["orientation"] = orientation.to_json()
        if task == Task.BINARY:
            schema["positive_class"] = roles.classes[-1]
        y_codes = class_codes(frame[target].to_numpy(), roles.classes)
        p_codes = class_codes(frame[prediction].to_numpy(), roles.classes)
        quality = (y_codes == p_codes).astype(float)
        metrics = _classification_metrics(frame, roles.classes, y_codes, p_codes, score_cols, task)
        quality_metric, higher = QualityMetric.ACCURACY, True
        variability = var.classification_variability(
            quality, *var.class_outcomes(y_codes, p_codes, len(roles.classes)), random_state=random_state)
        distributions["prediction"] = Distribution.fit(
            "prediction", as_class_strings(frame[prediction]), kind=CATEGORICAL,
            max_categories=max(30, len(roles.classes)))
        if score_cols:
            raw = frame[score_cols].to_numpy(dtype=float)
            if raw.shape[1] == 1:  # binary P(positive): confidence in the predicted class
                conf = np.where(p_codes == len(roles.classes) - 1, raw[:, 0], 1.0 - raw[:, 0])
            else:
                conf = raw.max(axis=1)
            distributions["score"] = Distribution.fit("score", conf, kind=NUMERIC)
        estimator = _fit_estimator(frame, task, method, random_state, y_true=target, y_pred=prediction,
                                   scores=score_cols or None, features=list(features), classes=list(roles.classes))
    metrics["rows"] = float(len(frame))
    calibration: dict[str, Any] = {}
    if task == Task.REGRESSION:
        calibration = _quality_by_bin("prediction", distributions["prediction"], yhat, quality, QualityMetric.MAE)
    elif "score" in distributions:
        calibration = _quality_by_bin("confidence", distributions["score"], conf, quality, QualityMetric.ACCURACY)
    weak = find_weak_segments(
        quality, metric=quality_metric, higher_is_better=higher,
        segments={dim: as_class_strings(frame[dim].fillna("")) for dim in segments}, binned=binned,
        ratios=_label_ratios(truth, pred, classes_list) if task == Task.MULTILABEL else None)
    return ReferenceArtifact(model=model, version=version, task=task, schema=schema, metrics=metrics,
                             distributions=distributions, weak_segments=weak, estimator=estimator,
                             calibration=calibration, variability=variability)


def _quality_by_bin(variable: str, dist: Distribution, x: np.ndarray, quality: np.ndarray,
                    metric: str) -> dict[str, Any]:
    """Mean quality per reference bin of ``x`` (a reliability table for the confidence)."""
    idx = dist.bin_indices(x)
    labels, means, values, counts = [], [], [], []
    for b, label in enumerate(dist.labels):
        sel = idx == b
        if sel.any():
            labels.append(label)
            means.append(float(np.nanmean(x[sel].astype(float))))
            values.append(float(np.nanmean(quality[sel])))
            counts.append(int(sel.sum()))
    return {"variable": variable, "metric": metric, "labels": labels, "mean": means, "quality": values,
            "count": counts}


def _fit_estimator(frame: pd.DataFrame, task: str, method: str, random_state: int, **roles: Any) -> Any:
    try:
        return create_estimator(task, method, random_state=random_state).fit(frame, task=task, **roles)
    except EstimationError as exc:
        raise ReferenceFitError(f"cannot fit the {method} estimator: {exc}") from exc


def _classification_metrics(frame: pd.DataFrame, classes: Sequence[str], y: np.ndarray, p: np.ndarray,
                             scores: Sequence[str], task: str) -> dict[str, float]:
    k = len(classes)
    tp, fp, fn = em.realized_outcomes(y, p, k)
    present = (tp + fp + fn) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
    out = {
        QualityMetric.ACCURACY: float(np.mean(y == p)),
        QualityMetric.F1_MACRO: em.f1_from_outcomes(tp, fp, fn),
        QualityMetric.PRECISION_MACRO: float(precision[present].mean()) if present.any() else float("nan"),
        QualityMetric.RECALL_MACRO: float(recall[present].mean()) if present.any() else float("nan"),
    }
    if task == Task.BINARY and k == 2:
        out[QualityMetric.F1] = em.f1_from_outcomes(tp, fp, fn, positive=1)
        if scores:
            raw = frame[list(scores)].to_numpy(dtype=float)
            out[QualityMetric.ROC_AUC] = em.realized_roc_auc(y == 1, raw[:, -1])
    elif scores and len(scores) == k:
        out[QualityMetric.ROC_AUC] = em.realized_roc_auc_ovr(y, frame[list(scores)].to_numpy(dtype=float))
    return out


def _multilabel_metrics(truth: list[list[str]], pred: list[list[str]],
                        classes: Sequence[str]) -> tuple[dict[str, float], np.ndarray]:
    exact = np.asarray([set(t) == set(q) for t, q in zip(truth, pred, strict=True)], dtype=float)
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    tp, fp, fn = np.zeros(k), np.zeros(k), np.zeros(k)
    for t, q in zip(truth, pred, strict=True):
        ts, qs = set(t), set(q)
        for c in qs:
            if c in index:
                (tp if c in ts else fp)[index[c]] += 1
        for c in ts - qs:
            if c in index:
                fn[index[c]] += 1
    metrics = {
        QualityMetric.EXACT_MATCH: float(exact.mean()),
        QualityMetric.F1_MACRO: em.f1_from_outcomes(tp, fp, fn),
        QualityMetric.LABELS_PER_SAMPLE: float(np.mean([len(q) for q in pred])),
    }
    return metrics, exact


def _label_ratios(truth: list[list[str]], pred: list[list[str]],
                  classes: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Multilabel per-label metrics pooled over the labels, as per-row (numerator, denominator) for the weak-segment
    search: precision tp / (tp + fp), recall tp / (tp + fn), F1 2 tp / (2 tp + fp + fn)."""
    tp, fp, fn = (x.sum(axis=1) for x in var.label_outcomes(truth, pred, classes))
    return {QualityMetric.PRECISION_MICRO: (tp, tp + fp), QualityMetric.RECALL_MICRO: (tp, tp + fn),
            QualityMetric.F1_MICRO: (2 * tp, 2 * tp + fp + fn)}


def _ranking_metrics(ranked: list[list[str]], relevant: list[list[str]],
                     ks: Sequence[int]) -> tuple[dict[str, float], np.ndarray]:
    """MRR, precision@k and NDCG@k (keys ``<metric>@<k>``) and the per-row reciprocal rank."""
    rr = np.asarray([reciprocal_rank(r, t) for r, t in zip(ranked, relevant, strict=True)], dtype=float)
    sums = ranking_sums(ranked, relevant, ks)
    n = max(sums.labeled, 1)
    metrics = {QualityMetric.MRR: float(rr.mean())}
    for k in ks:
        metrics[f"{QualityMetric.PRECISION_AT_K}{AT_K}{k}"] = sums.precision[k] / n
        metrics[f"{QualityMetric.NDCG_AT_K}{AT_K}{k}"] = sums.ndcg[k] / n
    return metrics, rr
