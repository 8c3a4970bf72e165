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
    MultilabelEstimator,
    create_estimator,
)
from otel_ml.estimation import metrics as em
from otel_ml.estimation.multilabel import IDENTITY, apply_platt
from tests.estimation.data import (
    CLASSES,
    LABEL_SCORES,
    LABELS,
    SCORES,
    binary_frame,
    multiclass_frame,
    multilabel_frame,
    regression_frame,
)

CLASSIFIERS = ["cbpe", "atc", "learned", "auto"]


def fit(method: str, task: str, frame: pd.DataFrame, **kw):
    est = create_estimator(task, method, **kw)
    if task == "binary":
        return est.fit(frame, y_true="y", y_pred="yhat", scores="p", features=["x", "region"])
    if task == "multiclass":
        return est.fit(frame, y_true="label", y_pred="pred", scores=SCORES, classes=CLASSES,
                       features=["x", "region"])
    if task == "multilabel":
        return est.fit(frame, y_true="tags", y_pred="predicted", scores=LABEL_SCORES, classes=LABELS,
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
    expected = {"accuracy", "f1", "roc_auc"} if task == "binary" else {"accuracy", "f1_macro", "roc_auc"}
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


@pytest.mark.parametrize("method", [*CLASSIFIERS, "dle", "multilabel"])
def test_deterministic_with_seed(method, binary_ref):
    task = {"dle": "regression", "multilabel": "multilabel"}.get(method, "binary")
    frames = {"regression": regression_frame, "multilabel": multilabel_frame, "binary": binary_frame}
    ref = binary_ref if task == "binary" else frames[task](800)
    a = fit(method, task, ref, random_state=3)
    b = fit(method, task, ref, random_state=3)
    analysis = frames[task](200, seed=4)
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
    with pytest.raises(EstimationError, match=r"needs at least 20 wrong and 20 right predictions.*0 wrong of 300"):
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
    assert set(ESTIMATORS) == {"cbpe", "atc", "confidence", "learned", "auto", "dle", "multilabel"}
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


# --- multilabel ------------------------------------------------------------------------------------------------------
def realized_exact(frame: pd.DataFrame) -> float:
    return float(np.mean([set(t.split("|")) - {""} == set(p.split("|")) - {""}
                          for t, p in zip(frame.tags, frame.predicted, strict=True)]))


@pytest.fixture(scope="module")
def ml_ref():
    return multilabel_frame(3000)


def test_multilabel_shapes_ranges_and_interval(ml_ref):
    est = fit("auto", "multilabel", ml_ref)
    assert isinstance(est, MultilabelEstimator) and est.estimator_key == "multilabel"
    analysis = multilabel_frame(400, seed=5)
    p, q, d = est.predict_details(analysis.drop(columns=["tags"]))
    assert p.shape == (400,) and q.shape == d.shape == (400, 4)
    assert np.all((p >= 0) & (p <= 1)) and np.all((q >= 0) & (q <= 1))
    product = np.prod(np.where(d, q, 1 - q), axis=1)
    np.testing.assert_allclose(p, apply_platt(est.joint_, product))  # the product, jointly recalibrated
    assert np.all(np.diff(p[np.argsort(product)]) >= -1e-12)
    metrics = est.estimate_metrics(analysis)
    assert set(metrics) == {"exact_match", "f1_macro"}
    for e in metrics.values():
        assert 0 <= e.lower <= e.value <= e.upper <= 1 and e.n == 400 and e.estimator == "multilabel"
    assert est.estimate(analysis).value == pytest.approx(float(p.mean()))
    assert est.error_margin_["exact_match"] > 0 and est.cv_


def test_multilabel_estimate_tracks_covariate_shift_per_chunk(ml_ref):
    """Realized vs estimated exact match on chunks of 1000 rows whose x moves away from the reference."""
    est = fit("auto", "multilabel", ml_ref)
    errors, inside = [], []
    for i, shift in enumerate([0.0, 0.5, 1.0, 1.5, -0.5, -1.0, -1.5, 2.0]):
        chunk = multilabel_frame(1000, seed=100 + i, shift=shift)
        e, real = est.estimate(chunk), realized_exact(chunk)
        errors.append(e.value - real)
        inside.append(e.contains(real))
    realized_range = [realized_exact(multilabel_frame(1000, seed=7, shift=s)) for s in (0.0, -1.5)]
    assert abs(realized_range[0] - realized_range[1]) > 0.1  # the shift really changes quality
    assert float(np.mean(np.abs(errors))) < 0.03
    assert np.mean(inside) >= 0.8


def test_multilabel_without_scores_uses_decision_rates():
    ref = multilabel_frame(2000, seed=1)
    est = MultilabelEstimator().fit(ref, y_true="tags", y_pred="predicted", classes=LABELS)
    analysis = multilabel_frame(2000, seed=2)
    assert abs(est.estimate(analysis).value - realized_exact(analysis)) < 0.05
    q = est.predict_details(analysis)[1]
    assert len(np.unique(q[:, 0])) <= 2  # one rate per decision, no score


def test_multilabel_degenerate_references():
    perfect = multilabel_frame(300, seed=3).assign(tags=lambda f: f.predicted)
    est = fit("multilabel", "multilabel", perfect)
    e = est.estimate(multilabel_frame(100, seed=4).assign(tags=lambda f: f.predicted))
    assert e.value > 0.9 and e.lower < 1.0  # no errors seen is not certainty
    assert est.error_margin_["exact_match"] == pytest.approx(3 / 300)
    assert est.joint_ == IDENTITY  # nothing to recalibrate against
    one = pd.DataFrame({"t": ["a"] * 50, "p": ["a"] * 50})
    p = MultilabelEstimator().fit(one, y_true="t", y_pred="p").predict_correctness(one)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    for n in (1, 5, 40):
        tiny = multilabel_frame(n, seed=1)
        e = fit("multilabel", "multilabel", tiny).estimate(multilabel_frame(50, seed=2))
        assert np.isfinite(e.value) and e.lower <= e.value <= e.upper


def test_multilabel_unseen_label_and_bad_input(ml_ref):
    est = fit("multilabel", "multilabel", ml_ref)
    analysis = multilabel_frame(20, seed=3)
    base = est.predict_correctness(analysis)
    analysis.loc[:4, "predicted"] = analysis.loc[:4, "predicted"] + "|Mystery"
    p = est.predict_correctness(analysis)
    assert np.all(np.isfinite(p)) and np.all(p[:5] < base[:5]) and np.all(p[5:] == base[5:])
    with pytest.raises(EstimationError, match="score columns"):
        MultilabelEstimator().fit(ml_ref, y_true="tags", y_pred="predicted", scores=LABEL_SCORES[:2], classes=LABELS)
    with pytest.raises(EstimationError, match="no column"):
        MultilabelEstimator().fit(ml_ref, y_true="nope", y_pred="predicted")
    with pytest.raises(EstimationError, match="does not support"):
        create_estimator("binary", "multilabel")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_multilabel_correlated_errors_are_recalibrated():
    """A real one-vs-rest model on scikit-learn's multilabel generator: labels' errors cluster on hard samples, so
    the plain product of per-label marginals underestimates exact match; the joint recalibration removes that."""
    from sklearn.datasets import make_multilabel_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    X, Y = make_multilabel_classification(n_samples=12000, n_features=10, n_classes=5, n_labels=2, random_state=0)
    labels = [f"l{j}" for j in range(5)]
    clf = OneVsRestClassifier(LogisticRegression(max_iter=300)).fit(X[:4000], Y[:4000])
    proba, truth = clf.predict_proba(X[4000:]), Y[4000:].astype(bool)
    names = np.array(labels)
    frame = pd.DataFrame({"x": X[4000:, 3], "tags": ["|".join(names[t]) for t in truth],
                          "pred": ["|".join(names[d]) for d in proba > 0.5]})
    for j, label in enumerate(labels):
        frame[f"s_{label}"] = proba[:, j]
    ref, analysis = frame.iloc[:4000], frame.iloc[4000:]
    est = MultilabelEstimator().fit(ref, y_true="tags", y_pred="pred", scores=[f"s_{c}" for c in labels],
                                    classes=labels, features=["x"])
    realized = float(np.all((proba > 0.5) == truth, axis=1)[4000:].mean())
    _, q, d = est.predict_details(analysis)
    plain = float(np.prod(np.where(d, q, 1 - q), axis=1).mean())
    assert abs(plain - realized) > 0.03  # independence is wrong here
    e = est.estimate(analysis)
    assert abs(e.value - realized) < 0.025 and e.contains(realized)
