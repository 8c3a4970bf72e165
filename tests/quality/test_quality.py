"""Every realized-quality metric against scikit-learn (or a hand-written oracle where sklearn has none)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from otel_ml.quality import (
    ClassificationAccumulator,
    MultilabelAccumulator,
    RankingAccumulator,
    RegressionAccumulator,
    roc_auc_score,
)

RNG = np.random.default_rng(7)


def _classes(n: int, k: int, names: list[str]) -> tuple[list[str], list[str]]:
    t = RNG.integers(0, k, n)
    p = np.where(RNG.random(n) < 0.7, t, RNG.integers(0, k, n))
    return [names[i] for i in t], [names[i] for i in p]


CASES = {
    "binary": _classes(500, 2, ["0", "1"]),
    "multiclass_strings": _classes(700, 5, ["cat", "dog", "émeu", "fox", "gnu"]),
    "pred_missing_a_class": (["a", "b", "c", "c"], ["a", "b", "b", "b"]),
    "label_missing_a_class": (["a", "a", "b"], ["a", "c", "b"]),
    "single_class": (["x"] * 5, ["x"] * 5),
    "single_class_wrong": (["x"] * 4, ["y"] * 4),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_classification_matches_sklearn(case: str) -> None:
    y_true, y_pred = CASES[case]
    acc = ClassificationAccumulator().update(y_true, y_pred)
    assert acc.accuracy() == pytest.approx(skm.accuracy_score(y_true, y_pred))
    labels = sorted(set(y_true) | set(y_pred))
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per = acc.per_class()
    assert list(per) == labels
    for i, c in enumerate(labels):
        assert per[c] == pytest.approx((p[i], r[i], f[i]))
    for average in ("macro", "micro"):
        exp = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average, zero_division=0)
        assert acc.averaged(average) == pytest.approx(exp[:3])


@pytest.mark.parametrize("case", sorted(CASES))
def test_classification_chunked_equals_one_batch(case: str) -> None:
    y_true, y_pred = CASES[case]
    whole = ClassificationAccumulator().update(y_true, y_pred)
    parts = [ClassificationAccumulator().update(y_true[i:i + 3], y_pred[i:i + 3]) for i in range(0, len(y_true), 3)]
    merged = ClassificationAccumulator()
    for part in reversed(parts):
        merged.merge(part)
    assert merged.sums_.labeled == whole.sums_.labeled
    assert merged.sums_.correct == whole.sums_.correct
    assert dict(merged.sums_.outcomes) == dict(whole.sums_.outcomes)


def test_empty_window_is_nan() -> None:
    assert math.isnan(ClassificationAccumulator().accuracy())
    assert math.isnan(RegressionAccumulator().mae())
    assert math.isnan(RankingAccumulator([1]).mrr())
    assert ClassificationAccumulator().averaged("macro") == (0.0, 0.0, 0.0)


def test_roc_auc_matches_sklearn_with_ties() -> None:
    y = RNG.integers(0, 2, 400).astype(bool)
    s = np.round(np.where(y, RNG.normal(0.6, 0.2, 400), RNG.normal(0.4, 0.2, 400)), 1)  # many ties
    assert roc_auc_score(y, s) == pytest.approx(skm.roc_auc_score(y, s))


def test_roc_auc_single_class_window_is_nan() -> None:
    assert math.isnan(roc_auc_score([True, True], [0.1, 0.9]))
    assert math.isnan(roc_auc_score([], []))


def test_regression_matches_sklearn_chunked() -> None:
    t = RNG.normal(10, 3, 300)
    p = t + RNG.normal(0.5, 1, 300)
    acc = RegressionAccumulator()
    for i in range(0, 300, 7):
        acc.merge(RegressionAccumulator().update(t[i:i + 7], p[i:i + 7]))
    assert acc.mae() == pytest.approx(skm.mean_absolute_error(t, p))
    assert acc.rmse() == pytest.approx(math.sqrt(skm.mean_squared_error(t, p)))
    assert acc.bias() == pytest.approx(float(np.mean(p - t)))


def _ranking_case(n: int, items: int) -> tuple[list[list[str]], list[list[str]], list[list[float]]]:
    ranked, relevant, grades = [], [], []
    universe = [f"i{j}" for j in range(items)]
    for _ in range(n):
        order = list(RNG.permutation(universe))
        rel = [u for u in universe if RNG.random() < 0.3]
        ranked.append(order)
        relevant.append(rel)
        grades.append([float(RNG.integers(1, 4)) for _ in rel])
    return ranked, relevant, grades


def _mrr_oracle(ranked: list[list[str]], relevant: list[list[str]]) -> float:
    total = 0.0
    for r, t in zip(ranked, relevant, strict=True):
        ranks = [i + 1 for i, item in enumerate(r) if item in set(t)]
        total += 1.0 / ranks[0] if ranks else 0.0
    return total / len(ranked)


@pytest.mark.parametrize("graded", [False, True])
def test_ranking_matches_oracles(graded: bool) -> None:
    ranked, relevant, grades = _ranking_case(200, 8)
    ks = (1, 3, 5)
    acc = RankingAccumulator(ks)
    for i in range(0, 200, 9):
        acc.merge(RankingAccumulator(ks).update(ranked[i:i + 9], relevant[i:i + 9],
                                                grades[i:i + 9] if graded else None))
    assert acc.mrr() == pytest.approx(_mrr_oracle(ranked, relevant))
    universe = sorted(ranked[0])
    y_true = np.array([[dict(zip(t, g if graded else [1.0] * len(t), strict=True)).get(u, 0.0) for u in universe]
                       for t, g in zip(relevant, grades, strict=True)])
    y_score = np.array([[len(r) - r.index(u) for u in universe] for r in ranked], dtype=float)
    for k in ks:
        assert acc.ndcg_at(k) == pytest.approx(skm.ndcg_score(y_true, y_score, k=k))
        exp_p = np.mean([sum(1 for item in r[:k] if item in set(t)) / k for r, t in zip(ranked, relevant,
                                                                                       strict=True)])
        assert acc.precision_at(k) == pytest.approx(exp_p)


def test_multilabel_matches_sklearn() -> None:
    labels = ["a", "b", "c", "d"]
    y_true = [[x for x in labels if RNG.random() < 0.4] for _ in range(300)]
    y_pred = [[x for x in t if RNG.random() < 0.8] + [x for x in labels if x not in t and RNG.random() < 0.1]
              for t in y_true]
    acc = MultilabelAccumulator()
    for i in range(0, 300, 11):
        acc.update(y_true[i:i + 11], y_pred[i:i + 11])
    from sklearn.preprocessing import MultiLabelBinarizer

    mlb = MultiLabelBinarizer(classes=labels).fit([labels])
    t, p = mlb.transform(y_true), mlb.transform(y_pred)
    assert acc.exact_match() == pytest.approx(skm.accuracy_score(t, p))
    assert acc.labels_per_sample() == pytest.approx(p.sum(axis=1).mean())
    pr, rc, f1, _ = skm.precision_recall_fscore_support(t, p, zero_division=0)
    per = acc.per_label()
    for i, lab in enumerate(labels):
        assert per[lab] == pytest.approx((pr[i], rc[i], f1[i]))
    for average in ("macro", "micro"):
        exp = skm.precision_recall_fscore_support(t, p, average=average, zero_division=0)
        assert acc.averaged(average) == pytest.approx(exp[:3])
