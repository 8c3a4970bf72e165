"""Contract tests shared by every estimator (sklearn ``test_common`` style)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from otel_ml.estimation import (
    ESTIMATORS,
    ATCEstimator,
    CalibratedConfidenceEstimator,
    DirectLossEstimator,
    Estimate,
    EstimationError,
    LearnedCorrectnessEstimator,
    create_estimator,
)
from otel_ml.estimation import metrics as em
from tests.estimation.data import CLASSES, SCORES, binary_frame, multiclass_frame, regression_frame

CLASSIFIERS = ["cbpe", "atc", "learned", "auto"]


def fit(method: str, task: str, frame: pd.DataFrame, **kw):
    est = create_estimator(task, method, **kw)
    if task == "binary":
        return est.fit(frame, y_true="y", y_pred="yhat", scores="p", features=["x", "region"])
    if task == "multiclass":
        return est.fit(frame, y_true="label", y_pred="pred", scores=SCORES, classes=CLASSES,
                       features=["x", "region"])
    return est.fit(frame, y_true="y", y_pred="yhat", features=["x", "kind"])


@pytest.fixture(scope="module")
def binary_ref():
    return binary_frame(1500)


@pytest.fixture(scope="module")
def mc_ref():
    return multiclass_frame(1500)


@pytest.mark.parametrize("method", CLASSIFIERS)
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_shapes_ranges_and_interval(method, task, binary_ref, mc_ref):
    ref = binary_ref if task == "binary" else mc_ref
    est = fit(method, task, ref)
    analysis = (binary_frame if task == "binary" else multiclass_frame)(400, seed=5)
    p = est.predict_correctness(analysis.drop(columns=["y" if task == "binary" else "label"]))
    assert p.shape == (400,)
    assert np.all((p >= 0) & (p <= 1))
    metrics = est.estimate_metrics(analysis)
    expected = {"accuracy", "f1", "roc_auc"} if task == "binary" else {"accuracy", "f1_macro"}
    assert set(metrics) == expected
    for e in metrics.values():
        assert isinstance(e, Estimate)
        assert 0 <= e.lower <= e.value <= e.upper <= 1
        assert e.n == 400 and e.estimator == est.estimator_key
    acc = est.estimate(analysis)
    assert acc.metric == "accuracy" and acc.value == pytest.approx(float(p.mean()))


@pytest.mark.parametrize("method", CLASSIFIERS)
def test_calibrated_data_estimates_are_close(method, mc_ref):
    est = fit(method, "multiclass", mc_ref)
    analysis = multiclass_frame(3000, seed=9)
    realized = float((analysis.pred == analysis.label).mean())
    e = est.estimate(analysis)
    assert abs(e.value - realized) < 0.04
    assert e.contains(realized)


@pytest.mark.parametrize("method", [*CLASSIFIERS, "dle"])
def test_deterministic_with_seed(method, binary_ref):
    task = "regression" if method == "dle" else "binary"
    ref = regression_frame(800) if method == "dle" else binary_ref
    a = fit(method, task, ref, random_state=3)
    b = fit(method, task, ref, random_state=3)
    analysis = regression_frame(200, seed=4) if method == "dle" else binary_frame(200, seed=4)
    np.testing.assert_array_equal(a.predict_correctness(analysis), b.predict_correctness(analysis))
    assert a.estimate(analysis) == b.estimate(analysis)


def test_covariate_shift_is_tracked(mc_ref):
    est = fit("auto", "multiclass", mc_ref)
    shifted = multiclass_frame(3000, seed=11, shift=1.5)  # confident region: accuracy rises
    realized = float((shifted.pred == shifted.label).mean())
    base = float((mc_ref.pred == mc_ref.label).mean())
    assert realized > base + 0.05
    e = est.estimate(shifted)
    assert abs(e.value - realized) < 0.04 and e.contains(realized)


@pytest.mark.parametrize("method", ["cbpe", "auto"])
def test_degenerate_no_errors(method):
    ref = binary_frame(300)
    ref["yhat"] = ref["y"]  # a perfect model on its evaluation set
    est = fit(method, "binary", ref)
    e = est.estimate(binary_frame(100, seed=2).assign(yhat=lambda d: d.y))
    assert e.value > 0.9
    assert e.lower < 1.0  # no errors seen is not certainty: the margin covers the reference's own uncertainty
    assert est.estimator_key == "cbpe"


def test_degenerate_one_class():
    ref = binary_frame(200)
    ref["y"] = 1
    ref["yhat"] = 1
    est = create_estimator("binary").fit(ref, y_true="y", y_pred="yhat", scores="p", classes=[0, 1])
    p = est.predict_correctness(ref)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))


@pytest.mark.parametrize("n", [1, 5, 40])
def test_tiny_reference_falls_back_to_cbpe(n):
    ref = multiclass_frame(n, seed=1)
    est = fit("auto", "multiclass", ref)
    assert est.estimator_key == "cbpe"
    e = est.estimate(multiclass_frame(50, seed=2))
    assert np.isfinite(e.value) and e.lower <= e.value <= e.upper


def test_learned_and_atc_refuse_unsuitable_reference():
    ref = binary_frame(300)
    ref["yhat"] = ref["y"]
    with pytest.raises(EstimationError, match="too few errors"):
        LearnedCorrectnessEstimator().fit(ref, y_true="y", y_pred="yhat", scores="p")
    with pytest.raises(EstimationError):
        ATCEstimator().fit(ref, y_true="y", y_pred="yhat")  # no scores


def test_without_scores_uses_class_precision():
    ref = multiclass_frame(1000)
    est = CalibratedConfidenceEstimator().fit(ref, y_true="label", y_pred="pred", classes=CLASSES)
    p = est.predict_correctness(ref)
    for cls in CLASSES:
        sel = (ref.pred == cls).to_numpy()
        if sel.sum() > 200:
            assert p[sel].mean() == pytest.approx((ref.pred == ref.label)[sel].mean(), abs=0.03)


def test_unseen_predicted_class_gets_an_estimate(mc_ref):
    est = fit("auto", "multiclass", mc_ref)
    analysis = multiclass_frame(20, seed=3)
    analysis.loc[:4, "pred"] = "Mystery"
    p = est.predict_correctness(analysis)
    assert np.all(np.isfinite(p))


def test_bad_input_is_rejected(binary_ref):
    with pytest.raises(EstimationError, match="no column"):
        CalibratedConfidenceEstimator().fit(binary_ref, y_true="nope", y_pred="yhat")
    with pytest.raises(EstimationError, match="empty"):
        CalibratedConfidenceEstimator().fit(binary_ref.iloc[:0], y_true="y", y_pred="yhat")
    with pytest.raises(EstimationError, match="not fitted"):
        CalibratedConfidenceEstimator().predict_correctness(binary_ref)
    with pytest.raises(EstimationError, match="does not support"):
        create_estimator("regression", "cbpe")
    with pytest.raises(EstimationError, match="unknown estimator"):
        create_estimator("binary", "magic")
    est = fit("cbpe", "binary", binary_ref)
    with pytest.raises(EstimationError, match="no prediction column"):
        est.predict_correctness(binary_ref.drop(columns=["yhat"]))


def test_registry_keys_match_classes():
    assert set(ESTIMATORS) == {"cbpe", "atc", "learned", "auto", "dle"}
    for key, cls in ESTIMATORS.items():
        assert cls.key == key


def test_dle_tracks_heteroscedastic_error():
    ref = regression_frame(3000)
    est = DirectLossEstimator().fit(ref, y_true="y", y_pred="yhat", features=["x", "kind"])
    calm = regression_frame(3000, seed=1).query("abs(x) < 0.5")
    wild = regression_frame(3000, seed=2).query("abs(x) > 1.5")
    for window in (calm, wild):
        realized = float(np.mean(np.abs(window.yhat - window.y)))
        e = est.estimate_metrics(window)
        assert abs(e["mae"].value - realized) / realized < 0.15
        assert e["mae"].contains(realized)
        assert e["rmse"].value > 0
    assert est.estimate(wild).value > 2 * est.estimate(calm).value


def test_dle_tiny_reference_uses_mean_errors():
    ref = regression_frame(30)
    est = DirectLossEstimator().fit(ref, y_true="y", y_pred="yhat")
    got = est.predict_correctness(regression_frame(5, seed=1))
    assert np.allclose(got, np.mean(np.abs(ref.yhat - ref.y)))


def test_expected_metrics_match_realized_in_expectation():
    rng = np.random.default_rng(0)
    n, k = 4000, 3
    proba = rng.dirichlet(np.ones(k), size=n)
    pred = proba.argmax(axis=1)
    draws = [np.array([rng.choice(k, p=row) for row in proba]) for _ in range(5)]
    exp_f1 = em.f1_from_outcomes(*em.expected_outcomes(proba, pred))
    real_f1 = np.mean([em.f1_from_outcomes(*em.realized_outcomes(y, pred, k)) for y in draws])
    assert exp_f1 == pytest.approx(real_f1, abs=0.02)
    score = proba[:, 1] / (proba[:, 0] + proba[:, 1])
    q = score
    y_pos = rng.random(n) < q
    assert em.expected_roc_auc(score, q) == pytest.approx(em.realized_roc_auc(y_pos, score), abs=0.03)


def test_auto_uses_features_only_when_they_inform_correctness():
    calibrated = binary_frame(3000, seed=4)  # scores are the true probabilities: features add nothing
    est = fit("auto", "binary", calibrated)
    assert est.estimator_key == "cbpe" and est.loglik_z_ > -2
    hidden = multiclass_frame(3000, seed=4)
    rng = np.random.default_rng(4)
    flip = (hidden.region == "apac").to_numpy() & (rng.random(len(hidden)) < 0.5)  # errors the scores do not show
    hidden.loc[flip, "label"] = np.where(hidden.loc[flip, "pred"] == "cat", "dog", "cat")
    est = fit("auto", "multiclass", hidden)
    assert est.estimator_key == "learned" and est.loglik_z_ < -2
    shifted = multiclass_frame(2000, seed=5)
    shifted = shifted[shifted.region == "apac"].copy()  # all traffic moves to the weak region
    flip = rng.random(len(shifted)) < 0.5
    shifted.loc[flip, "label"] = np.where(shifted.loc[flip, "pred"] == "cat", "dog", "cat")
    realized = float((shifted.pred == shifted.label).mean())
    e = est.estimate(shifted)
    assert abs(e.value - realized) < 0.05 and e.contains(realized)
