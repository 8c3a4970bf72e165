"""Issue #16 and #12.3: estimates that are not silently wrong.

Score orientation checked at fit, the inputs users have ({class: column} mappings, metric aliases, positive class),
calibration that knows how little a near-perfect reference says, novelty (unknown correctness, pessimistic and
optimistic bounds) and the multiclass ROC AUC estimate against scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from otel_ml.estimation import CalibratedConfidenceEstimator, EstimationError, create_estimator
from otel_ml.estimation import metrics as em
from otel_ml.estimation.confidence import apply_isotonic, fit_isotonic, isotonic_sd
from otel_ml.estimation.novelty import SupportModel, novel_share
from otel_ml.reference import ReferenceFitError, fit_reference
from otel_ml.reference.cli import main
from tests.estimation.data import CLASSES, SCORES, binary_frame, multiclass_frame


def cancer_like(n: int, seed: int = 0) -> pd.DataFrame:
    """A calibrated binary model with labels ``malignant``/``benign`` whose score column is P(benign)."""
    frame = binary_frame(n, seed)
    return pd.DataFrame({"x": frame.x, "label": np.where(frame.y == 1, "benign", "malignant"),
                         "pred": np.where(frame.yhat == 1, "benign", "malignant"), "p_benign": frame.p})


# --- orientation -------------------------------------------------------------------------------------------------
def test_flipped_binary_score_is_refused_with_the_fix():
    ref = cancer_like(600)
    # Default class order is the sorted labels: the positive class is "malignant", but the column is P(benign).
    with pytest.raises(EstimationError, match=r"wrong way round.*P\('malignant'\).*ROC AUC 0\.1.*"
                                              r"positive_class='benign'.*--positive-class benign"):
        create_estimator("binary", "cbpe").fit(ref, y_true="label", y_pred="pred", scores="p_benign")
    with pytest.raises(ReferenceFitError, match="wrong way round"):
        fit_reference(ref, model="m", task="binary", target="label", prediction="pred", scores=["p_benign"],
                      method="cbpe")
    # Named the right way, the same column is accepted, and the report says how it was read.
    est = create_estimator("binary", "cbpe").fit(ref, y_true="label", y_pred="pred", scores="p_benign",
                                                 positive_class="benign")
    assert est.roles_.classes == ("malignant", "benign") and est.orientation_.roc_auc > 0.8
    assert "read as P('benign')" in est.orientation_.describe()


def test_reversed_integer_classes_are_refused():
    ref = binary_frame(600)  # p = P(y == 1)
    with pytest.raises(EstimationError, match=r"'p' is read as P\('0'\).*--classes 0 1"):
        create_estimator("binary", "cbpe").fit(ref, y_true="y", y_pred="yhat", scores="p", classes=[1, 0])
    create_estimator("binary", "cbpe").fit(ref, y_true="y", y_pred="yhat", scores="p", classes=[0, 1])


def test_permuted_multiclass_columns_are_refused_with_the_mapping():
    ref = multiclass_frame(900)
    with pytest.raises(EstimationError, match=r"not in classes order.*'p_cat', given for 'dog', looks like P\('cat'\)"):
        create_estimator("multiclass", "cbpe").fit(ref, y_true="label", y_pred="pred",
                                                   scores=["p_dog", "p_cat", "p_fox"], classes=CLASSES)


def test_near_perfect_model_with_confident_errors_is_not_refused():
    ref = binary_frame(400, seed=3)
    ref["yhat"] = (ref.p > 0.5).astype(int)
    ref["y"] = ref["yhat"]
    ref.loc[:1, "y"] = 1 - ref.loc[:1, "yhat"]  # two errors, both as confident as predictions get
    ref.loc[:1, "p"] = np.where(ref.loc[:1, "yhat"] == 1, 0.999, 0.001)
    est = create_estimator("binary", "auto").fit(ref, y_true="y", y_pred="yhat", scores="p")
    assert est.orientation_.correctness_auc < 0.5  # anti-correlated by chance, not significantly


# --- the inputs users have ---------------------------------------------------------------------------------------
def test_class_column_mappings():
    ref = multiclass_frame(600)
    listed = create_estimator("multiclass", "cbpe").fit(ref, y_true="label", y_pred="pred", scores=SCORES,
                                                        classes=CLASSES)
    mapped = create_estimator("multiclass", "cbpe").fit(
        ref, y_true="label", y_pred="pred", scores={"fox": "p_fox", "cat": "p_cat", "dog": "p_dog"}, classes=CLASSES)
    assert mapped.roles_.scores == tuple(SCORES)
    np.testing.assert_allclose(mapped.predict_correctness(ref), listed.predict_correctness(ref))
    inferred = create_estimator("multiclass", "cbpe").fit(ref, y_true="label", y_pred="pred",
                                                          scores=dict(zip(CLASSES, SCORES, strict=True)))
    assert inferred.roles_.classes == tuple(CLASSES)
    with pytest.raises(EstimationError, match="differ from classes"):
        create_estimator("multiclass", "cbpe").fit(ref, y_true="label", y_pred="pred",
                                                   scores={"cat": "p_cat", "dog": "p_dog"}, classes=CLASSES)
    cancer = cancer_like(400).assign(p_malignant=lambda f: 1 - f.p_benign)
    one = create_estimator("binary", "cbpe").fit(cancer, y_true="label", y_pred="pred", scores={"benign": "p_benign"})
    both = create_estimator("binary", "cbpe").fit(cancer, y_true="label", y_pred="pred",
                                                  scores={"malignant": "p_malignant", "benign": "p_benign"},
                                                  positive_class="benign")
    assert one.roles_.classes == both.roles_.classes == ("malignant", "benign")
    assert both.roles_.scores == ("p_malignant", "p_benign")
    np.testing.assert_allclose(one.predict_correctness(cancer), both.predict_correctness(cancer))


def test_cli_accepts_class_column_pairs_and_positive_class(tmp_path, capsys):
    data = tmp_path / "eval.csv"
    cancer_like(300).to_csv(data, index=False)
    base = ["fit", "--model", "m", "--task", "binary", "--data", str(data), "--target", "label",
            "--prediction", "pred", "--method", "cbpe", "--out"]
    assert main([*base, str(tmp_path / "a"), "--scores", "p_benign"]) == 2
    assert "wrong way round" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "b"), "--scores", "p_benign", "--positive-class", "benign"]) == 0
    assert main([*base, str(tmp_path / "c"), "--scores", "benign=p_benign"]) == 0
    assert main([*base, str(tmp_path / "d"), "--scores", "benign=p_benign", "p_x"]) == 2
    capsys.readouterr()
    assert main(["report", str(tmp_path / "c"), "--out", str(tmp_path / "rep")]) == 0
    assert "'p_benign' read as P('benign')" in capsys.readouterr().out


def test_metric_aliases_and_multiclass_names():
    ref = multiclass_frame(600)
    est = create_estimator("multiclass", "cbpe").fit(ref, y_true="label", y_pred="pred", scores=SCORES,
                                                     classes=CLASSES)
    got = est.estimate_metrics(ref, ["f1", "auc", "macro_f1"])
    assert set(got) == {"f1", "auc", "macro_f1"}
    assert got["f1"].metric == "f1_macro" and got["f1"].value == got["macro_f1"].value
    assert got["auc"].metric == "roc_auc"
    with pytest.raises(EstimationError, match=r"cannot estimate.*aliases"):
        est.estimate_metrics(ref, ["precision_at_k"])
    bref = binary_frame(600)
    best = create_estimator("binary", "cbpe").fit(bref, y_true="y", y_pred="yhat", scores="p")
    both = best.estimate_metrics(bref, ["f1", "f1_macro"])
    y, yhat = bref.y.to_numpy(), bref.yhat.to_numpy()
    realized_macro = em.f1_from_outcomes(*em.realized_outcomes(y, yhat, 2))
    assert both["f1_macro"].value == pytest.approx(realized_macro, abs=0.03)
    assert both["f1"].value != both["f1_macro"].value


# --- calibration that knows how little it knows -------------------------------------------------------------------
def test_near_perfect_calibration_never_reaches_one_and_follows_confidence_where_evidence_is_thin():
    rng = np.random.default_rng(0)
    conf = np.concatenate([rng.uniform(0.97, 1.0, 355), rng.uniform(0.6, 0.97, 6)])
    correct = np.ones(conf.size, dtype=bool)
    correct[-3:] = False  # a few errors, among the rare low-confidence rows
    knots = fit_isotonic(conf, correct, low=0.5)
    assert max(knots["y"]) < 1.0
    x = np.array([0.65, 0.75, 0.99])
    p, sd = apply_isotonic(knots, x), isotonic_sd(knots, x)
    assert p[0] < 0.8 and p[1] < 0.9  # not 1.0: the reference has nearly no evidence there
    assert p[2] > 0.98 and sd[2] < sd[1] < 0.5 and sd[0] > 0.05  # thin evidence, wide posterior


def test_auto_contests_with_few_errors_and_reports_calibration_uncertainty():
    ref = multiclass_frame(800, seed=2)
    ref["pred"] = ref["label"]
    ref.loc[:5, "pred"] = "fox"  # 6 errors at most: too few for `learned`
    est = create_estimator("multiclass", "auto").fit(ref, y_true="label", y_pred="pred", scores=SCORES,
                                                     classes=CLASSES)
    assert {"cbpe", "confidence", "atc"} <= set(est.cv_scores_) and "learned" not in est.cv_scores_
    assert set(est.chunk_z_) == {"confidence", "atc"}
    # This model is right far more often than its scores say: a threshold at the reference's error rate (ATC)
    # tracks the held-out chunks better than calibration pulled towards those scores, and wins the contest.
    assert est.estimator_key == "atc" and est.chunk_z_["atc"] < -2
    cbpe = create_estimator("multiclass", "cbpe").fit(ref, y_true="label", y_pred="pred", scores=SCORES,
                                                      classes=CLASSES)
    assert cbpe.predict_correctness(ref).max() < 1.0  # no calibrated prediction is certain with 6 errors


# --- novelty -----------------------------------------------------------------------------------------------------
def test_support_model_pvalues():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 3))
    support = SupportModel.fit(X, [False, False, False])
    assert support is not None
    same = support.pvalues(rng.normal(size=(2000, 3)))
    assert 0.4 < same.mean() < 0.6 and np.mean(same < 0.1) < 0.15  # about uniform
    assert novel_share(same) < 0.03
    far = support.pvalues(rng.normal(size=(200, 3)) + 8.0)
    assert np.all(far <= 1.0 / (support.null.size + 1))
    mixed = np.concatenate([same[:700], support.pvalues(rng.normal(size=(300, 3)) + 3.0)])
    assert 0.15 < novel_share(mixed) < 0.35
    again = SupportModel.from_json(support.to_json())
    np.testing.assert_array_equal(again.pvalues(X[:50]), support.pvalues(X[:50]))
    assert SupportModel.fit(X[:10], [False] * 3) is None and SupportModel.fit(X[:, :0], []) is None


def test_unknown_correctness_is_counted_bounded_and_covered():
    ref = multiclass_frame(1200)
    est = create_estimator("multiclass", "cbpe").fit(ref, y_true="label", y_pred="pred", scores=SCORES,
                                                     classes=CLASSES, features=["x", "region"])
    calm = multiclass_frame(600, seed=5)
    e = est.estimate(calm)
    assert e.unknown <= 3 and e.novel_share < 0.05
    assert e.pessimistic == pytest.approx(max(e.lower, 0.0), abs=0.02)
    window = multiclass_frame(600, seed=6)
    window.loc[:99, "x"] += 40.0  # inputs far outside anything the reference had
    window.loc[100:149, "pred"] = "mystery"  # a class the reference never had
    rows = est.predict_rows(window)
    assert rows.out_of_support[:100].all() and not rows.out_of_support[100:].any()
    assert rows.unseen[100:150].all() and rows.unknown.sum() == 150
    conf = window[SCORES].max(axis=1).to_numpy()
    np.testing.assert_allclose(rows.p[:100], conf[:100])  # the prior: the model's own confidence
    assert np.all(rows.calibration_sd[:150] == 0.0)
    w = est.estimate(window)
    assert w.unknown == 150 and w.novel_share >= 0.25
    assert w.pessimistic is not None and w.optimistic is not None
    assert w.lower <= w.pessimistic <= w.value <= w.optimistic <= w.upper
    mass = rows.p[150:].sum()
    assert w.pessimistic <= mass / len(window)  # every unknown row wrong at least
    # whatever the unknown rows' truth, the band holds the realized accuracy
    truth = (window.pred == window.label).to_numpy()
    for fill in (False, True):
        realized = float(np.where(rows.unknown, fill, truth).mean())
        assert w.contains(realized)


def test_missing_features_count_and_widen():
    ref = multiclass_frame(1000)
    est = create_estimator("multiclass", "cbpe").fit(ref, y_true="label", y_pred="pred", scores=SCORES,
                                                     classes=CLASSES, features=["x", "region"])
    window = multiclass_frame(500, seed=7)
    full = est.estimate(window)
    window.loc[:99, "x"] = np.nan
    assert est.missing_features(window) == {"x": 100, "region": 0}
    lacking = window.drop(columns=["region"])
    assert est.missing_features(lacking) == {"x": 100, "region": 500}
    assert est.window_drift(lacking) > est.window_drift(window) > est.window_drift(multiclass_frame(500, seed=7))
    assert est.estimate(lacking).drift_allowance > full.drift_allowance


def test_old_artifact_state_without_support_loads():
    ref = multiclass_frame(300)
    est = CalibratedConfidenceEstimator().fit(ref, y_true="label", y_pred="pred", scores=SCORES, classes=CLASSES,
                                              features=["x"])
    state, objects = est.to_state()
    state.pop("support")
    for curve in state["core"]["curves"].values():
        curve.pop("sd")
    old = CalibratedConfidenceEstimator.from_state(state, objects)
    assert old.support_ is None and np.isnan(old.novelty_pvalues(ref)).all()
    e = old.estimate(ref)
    assert e.calibration_sd == 0.0 and e.unknown == 0 and np.isfinite(e.value)


# --- ROC AUC estimates against scikit-learn ------------------------------------------------------------------------
def test_multiclass_roc_auc_matches_scikit_learn():
    rng = np.random.default_rng(3)
    frame = multiclass_frame(3000, seed=8)
    codes = np.array([CLASSES.index(c) for c in frame.label])
    proba = frame[SCORES].to_numpy()
    assert em.realized_roc_auc_ovr(codes, proba) == pytest.approx(
        roc_auc_score(codes, proba, multi_class="ovr", average="macro"), abs=1e-12)
    est = create_estimator("multiclass", "cbpe").fit(multiclass_frame(1500), y_true="label", y_pred="pred",
                                                     scores=SCORES, classes=CLASSES)
    inside = []
    for _ in range(4):
        window = frame.iloc[rng.choice(len(frame), 700, replace=False)]
        e = est.estimate_metrics(window, ["roc_auc"])["roc_auc"]
        y = np.array([CLASSES.index(c) for c in window.label])
        realized = roc_auc_score(y, window[SCORES].to_numpy(), multi_class="ovr", average="macro")
        assert abs(e.value - realized) < 0.03
        inside.append(e.contains(realized))
    assert all(inside)
