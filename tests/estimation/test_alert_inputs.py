"""What the statistical alert rules read from the reference and the stage: baseline variability, reference bin
shares, per-bin counters of predictions and set sizes, weak slices per label (multilabel), discrete bins."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from otel_ml.drift import Distribution
from otel_ml.estimation import metrics as em
from otel_ml.processor.stage import PredictionBatch
from otel_ml.processor.stages.estimation import EstimationStage
from otel_ml.processor.stages.estimation.reference_gauges import smoothed_shares
from otel_ml.reference import fit_reference, load
from otel_ml.reference import variability as var
from otel_ml.reference.weak_segments import find_weak_segments
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import QualityMetric as QM
from tests.estimation.data import CLASSES, SCORES, multiclass_frame, regression_frame
from tests.estimation.test_stage import Clock, RecordingSink


def test_integer_valued_variables_get_one_bin_per_value() -> None:
    sizes = np.array([0, 1, 1, 2, 2, 2, 2, 3, 3, 4] * 30, dtype=float)
    dist = Distribution.fit("set_size", sizes, kind="numeric")
    assert dist.labels == ["<0.5", "[0.5,1.5)", "[1.5,2.5)", "[2.5,3.5)", ">=3.5", "missing"]
    assert dist.counts == [30, 60, 120, 60, 30, 0]
    many = Distribution.fit("x", np.arange(1000.0))
    assert len(many.labels) == 11  # quantile bins beyond 20 distinct values


def test_multiclass_variability_is_recorded_and_round_trips(tmp_path: Path) -> None:
    frame = multiclass_frame(1500)
    art = fit_reference(frame, model="router", task="multiclass", target="label", prediction="pred", scores=SCORES,
                        classes=CLASSES, features=["x"], method="cbpe")
    acc = art.metrics[QM.ACCURACY]
    assert art.variability[QM.ACCURACY] == pytest.approx(math.sqrt(acc * (1 - acc)), rel=1e-3)
    # macro F1's bootstrap sd, scaled to one row, against fresh evaluation sets of the same size
    fresh = []
    for seed in range(1, 41):
        f = multiclass_frame(1500, seed=seed)
        codes = {c: i for i, c in enumerate(CLASSES)}
        y, p = f.label.map(codes).to_numpy(), f.pred.map(codes).to_numpy()
        fresh.append(em.f1_from_outcomes(*(x.sum(axis=0) for x in var.class_outcomes(y, p, len(CLASSES)))))
    assert art.variability[QM.F1_MACRO] == pytest.approx(float(np.std(fresh, ddof=1)) * math.sqrt(1500), rel=0.35)
    art.save(tmp_path / "router")
    assert load(tmp_path / "router").variability == art.variability


def test_regression_and_multilabel_variability() -> None:
    reg = fit_reference(regression_frame(800), model="price", task="regression", target="y", prediction="yhat")
    err = (regression_frame(800).yhat - regression_frame(800).y).to_numpy()
    assert reg.variability[QM.MAE] == pytest.approx(np.std(np.abs(err), ddof=1))
    assert reg.variability[QM.RMSE] == pytest.approx(np.std(err**2, ddof=1) / (2 * np.sqrt(np.mean(err**2))))
    truth = ["a|b", "a", "b|c", "c", "a|c"] * 60
    pred = ["a|b", "a|c", "b", "c", "a|b|c"] * 60
    ml = fit_reference(pd.DataFrame({"t": truth, "p": pred}), model="tagger", task="multilabel", target="t",
                       prediction="p")
    sizes = np.array([len(p.split("|")) for p in pred], dtype=float)
    assert ml.variability[QM.LABELS_PER_SAMPLE] == pytest.approx(np.std(sizes, ddof=1))
    exact = [t == p for t, p in zip(truth, pred, strict=True)]
    assert ml.variability[QM.EXACT_MATCH] == pytest.approx(np.std(exact, ddof=1))
    assert ml.variability[QM.F1_MACRO] > 0


def test_a_slice_with_lower_per_label_precision_is_weak_even_when_exact_match_is_not() -> None:
    """100k rows; in the slice (20 %) the model adds a wrong label to a third of the samples that have two true
    labels: exact match does not move, pooled per-label precision is 0.55 there against 0.64 elsewhere."""
    rng = np.random.default_rng(7)
    n = 100_000
    in_slice = rng.random(n) < 0.2
    true_count = rng.integers(1, 3, size=n).astype(float)
    exact = (rng.random(n) < 0.3).astype(float)  # same exact-match rate in and out of the slice
    extra_fp = np.where(in_slice & (true_count == 2) & (exact == 0) & (rng.random(n) < 0.6), 1.0, 0.0)
    tp = np.where(exact == 1, true_count, np.maximum(true_count - 1, 0))
    fp = np.where(exact == 1, 0.0, 0.65) + extra_fp
    fn = true_count - tp
    ratios = {QM.PRECISION_MICRO: (tp, tp + fp), QM.RECALL_MICRO: (tp, tp + fn),
              QM.F1_MICRO: (2 * tp, 2 * tp + fp + fn)}
    segments = {"language": np.where(in_slice, "ja", np.where(rng.random(n) < 0.5, "en", "de"))}
    only_exact = find_weak_segments(exact, metric=QM.EXACT_MATCH, higher_is_better=True, segments=segments,
                                    binned={})
    assert [w.name for w in only_exact] == []
    weak = find_weak_segments(exact, metric=QM.EXACT_MATCH, higher_is_better=True, segments=segments, binned={},
                              ratios=ratios)
    assert [w.name for w in weak] == ["language=ja"]
    (ja,) = weak
    assert ja.metric in (QM.PRECISION_MICRO, QM.F1_MICRO)
    assert ja.upper < ja.overall
    precision = tp[in_slice].sum() / (tp[in_slice] + fp[in_slice]).sum()
    overall = tp.sum() / (tp + fp).sum()
    assert precision < overall - 0.05


def test_multilabel_fit_searches_weak_slices_per_label() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    language = rng.choice(["en", "de", "ja"], size=n, p=[0.45, 0.4, 0.15])
    labels = list("abcd")
    truth = [sorted(rng.choice(labels, rng.integers(1, 3), replace=False)) for _ in range(n)]
    pred = []
    for t, lang in zip(truth, language, strict=True):
        extra = [c for c in labels if c not in t][:1] if (lang == "ja" and rng.random() < 0.7) else []
        pred.append(t + extra if rng.random() < 0.9 else t[:1])
    frame = pd.DataFrame({"t": ["|".join(t) for t in truth], "p": ["|".join(p) for p in pred], "language": language})
    art = fit_reference(frame, model="tagger", task="multilabel", target="t", prediction="p", segments=["language"])
    ja = [w for w in art.weak_segments if w.name == "language=ja"]
    assert len(ja) == 1 and ja[0].metric in (QM.EXACT_MATCH, QM.PRECISION_MICRO, QM.F1_MICRO)
    assert len({w.name for w in art.weak_segments}) == len(art.weak_segments)  # one entry per slice


def test_the_stage_exports_what_the_alert_rules_read(tmp_path: Path) -> None:
    truth = ["a|b", "a", "b|c", "c", "a|c"] * 80
    pred = ["a|b", "a|c", "b", "c", "a|b|c"] * 80
    x = np.tile(np.arange(5.0), 80)
    art = fit_reference(pd.DataFrame({"t": truth, "p": pred, "x": x}), model="tagger", task="multilabel",
                        target="t", prediction="p", features=["x"])
    art.save(tmp_path / "refs" / "tagger" / "default")
    stage = EstimationStage(tmp_path / "refs", reload_interval=30.0, relabel_path=None, relabel_max_samples=10,
                            clock=Clock())
    lists = [["a"], ["a", "b"], ["a", "b", "c"], ["zzz"]] * 25
    batch = PredictionBatch(model="tagger", version="v1", task="multilabel", classes=None,
                            ids=[str(i) for i in range(100)], timestamps=np.full(100, 1.7e9), values=None,
                            scores=np.full(100, np.nan), value_lists=lists, segments=[""] * 100,
                            features={"x": [4.0] * 100})
    sink = RecordingSink()
    stage.on_predictions(batch, sink)
    stage.on_tick(1_700_000_000.0, sink)
    # per-bin counters: the drift of any window, in PromQL
    size = art.distribution("set_size")
    for label, count in zip(size.labels, size.count([float(len(s)) for s in lists]), strict=True):
        assert sink.total(m.SET_SIZE_BIN_OBSERVATIONS, **{a.ML_BIN: label}) == count
    flat = [c for s in lists for c in s]
    pred_dist = art.distribution("prediction")
    for label, count in zip(pred_dist.labels, pred_dist.count(flat), strict=True):
        assert sink.total(m.PREDICTION_BIN_OBSERVATIONS, **{a.ML_BIN: label}) == count
    assert sink.total(m.FEATURE_BIN_OBSERVATIONS, **{a.ML_FEATURE_NAME: "x", a.ML_BIN: ">=3.5"}) == 100
    # reference gauges: smoothed shares summing to 1, variability, rows, weak-slice shares
    shares = sink.gauge(m.REFERENCE_FEATURE_BIN_SHARE, **{a.ML_FEATURE_NAME: "x"})
    assert len(shares) == len(art.feature_distributions["x"].labels) and sum(shares) == pytest.approx(1.0)
    assert sum(sink.gauge(m.REFERENCE_SET_SIZE_BIN_SHARE)) == pytest.approx(1.0)
    assert sink.gauge(m.REFERENCE_SET_SIZE_BIN_SHARE, **{a.ML_BIN: "[1.5,2.5)"}) == [
        pytest.approx(float(smoothed_shares(size)[size.labels.index("[1.5,2.5)")]))]
    assert sink.gauge(m.REFERENCE_ROWS) == [400.0]
    for metric, sd in art.variability.items():
        assert sink.gauge(m.REFERENCE_METRIC_SD, **{a.ML_METRIC: metric}) == [pytest.approx(sd)]
    for weak in art.weak_segments:
        assert sink.gauge(m.REFERENCE_WEAK_SEGMENT_SHARE, **{a.ML_WEAK_SEGMENT: weak.name}) == [weak.support / 400]


def test_a_reference_fitted_before_variability_was_recorded_still_gives_the_proportions(tmp_path: Path) -> None:
    art = fit_reference(multiclass_frame(600), model="router", task="multiclass", target="label", prediction="pred",
                        scores=SCORES, classes=CLASSES, method="cbpe")
    art.variability = {}
    art.save(tmp_path / "refs" / "router" / "default")
    assert not (tmp_path / "refs" / "router" / "default" / "variability.json").exists()
    stage = EstimationStage(tmp_path / "refs", reload_interval=30.0, relabel_path=None, relabel_max_samples=10,
                            clock=Clock())
    frame = multiclass_frame(50, seed=2)
    batch = PredictionBatch(model="router", version="", task="multiclass", classes=tuple(CLASSES),
                            ids=[str(i) for i in range(50)], timestamps=np.full(50, 1.7e9), values=list(frame.pred),
                            scores=frame[SCORES].max(axis=1).to_numpy(), score_matrix=frame[SCORES].to_numpy(),
                            segments=[""] * 50)
    sink = RecordingSink()
    stage.on_predictions(batch, sink)
    stage.on_tick(1_700_000_000.0, sink)
    acc = art.metrics[QM.ACCURACY]
    expected = [pytest.approx(math.sqrt(acc * (1 - acc)))]
    assert sink.gauge(m.REFERENCE_METRIC_SD, **{a.ML_METRIC: QM.ACCURACY}) == expected
    assert sink.gauge(m.REFERENCE_METRIC_SD, **{a.ML_METRIC: QM.F1_MACRO}) == []  # needs a refit
    shutil.rmtree(tmp_path / "refs")
