"""Reference artifacts: fit, round trip, refusal of tampered or unknown-version artifacts, CLI, weak segments."""

from __future__ import annotations

import hashlib
import json
import operator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from otel_ml.reference import ArtifactError, ReferenceFitError, fit_reference, load
from otel_ml.reference.cli import main
from otel_ml.reference.weak_segments import wilson_interval
from tests.estimation.data import (
    CLASSES,
    LABEL_SCORES,
    LABELS,
    SCORES,
    multiclass_frame,
    multilabel_frame,
    regression_frame,
)


@pytest.fixture(scope="module")
def mc_eval() -> pd.DataFrame:
    frame = multiclass_frame(1200)
    # Plant a weak segment: predictions in region "apac" are wrong 40 % more often.
    rng = np.random.default_rng(7)
    flip = (frame.region == "apac").to_numpy() & (rng.random(len(frame)) < 0.4)
    frame.loc[flip, "pred"] = np.where(frame.loc[flip, "label"] == "cat", "dog", "cat")
    return frame


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory, mc_eval) -> Path:
    art = fit_reference(mc_eval, model="router", task="multiclass", target="label", prediction="pred",
                        scores=SCORES, classes=CLASSES, features=["x", "region"], segments=["region"])
    return art.save(tmp_path_factory.mktemp("refs") / "router" / "default")


def test_round_trip_preserves_everything(artifact_dir, mc_eval):
    art = load(artifact_dir)
    assert art.model == "router" and art.task == "multiclass" and art.classes == CLASSES
    assert art.metrics["accuracy"] == pytest.approx(float((mc_eval.pred == mc_eval.label).mean()))
    assert set(art.feature_distributions) == {"x", "region"}
    assert art.distribution("prediction") is not None and art.distribution("score") is not None
    assert art.calibration["variable"] == "confidence" and sum(art.calibration["count"]) == len(mc_eval)
    assert np.mean(art.calibration["quality"]) == pytest.approx(art.metrics["accuracy"], abs=0.05)
    again = fit_reference(mc_eval, model="router", task="multiclass", target="label", prediction="pred",
                          scores=SCORES, classes=CLASSES, features=["x", "region"], segments=["region"])
    np.testing.assert_allclose(art.estimator.predict_correctness(mc_eval), again.estimator.predict_correctness(mc_eval))
    files = json.loads((artifact_dir / "manifest.json").read_text())["files"]
    assert {"schema.json", "metrics.json", "distributions.json", "weak_segments.json", "estimator.json"} <= set(files)
    assert not any(p.suffix == ".pkl" for p in artifact_dir.iterdir())


def test_planted_weak_segment_is_found(artifact_dir):
    weak = {w.name: w for w in load(artifact_dir).weak_segments}
    assert "region=apac" in weak
    w = weak["region=apac"]
    assert w.upper < w.overall and w.support > 300 and w.lower < w.value < w.upper
    assert "region=eu" not in weak


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_tampered_file_is_refused(artifact_dir, tmp_path):
    d = _copy(artifact_dir, tmp_path / "a")
    metrics = json.loads((d / "metrics.json").read_text())
    metrics["accuracy"] = 0.99
    (d / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ArtifactError, match="sha256"):
        load(d)


def test_unknown_version_is_refused(artifact_dir, tmp_path):
    d = _copy(artifact_dir, tmp_path / "b")
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="unknown format_version 99"):
        load(d)


def test_missing_manifest_and_foreign_files_are_refused(artifact_dir, tmp_path):
    d = _copy(artifact_dir, tmp_path / "c")
    (d / "extra.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(ArtifactError, match="not in the manifest"):
        load(d)
    (d / "extra.pkl").unlink()
    (d / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        load(d)


def test_untrusted_skops_types_are_refused(artifact_dir, tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    d = _copy(artifact_dir, tmp_path / "d")
    blob = sio.dumps({"learned.correctness": FunctionTransformer(func=operator.add)})
    (d / "estimator.skops").write_bytes(blob)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["files"]["estimator.skops"] = hashlib.sha256(blob).hexdigest()  # a matching checksum
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="untrusted types"):
        load(d)


def test_fit_rejects_bad_input(mc_eval):
    with pytest.raises(ReferenceFitError, match="no column"):
        fit_reference(mc_eval, model="m", task="multiclass", target="nope", prediction="pred")
    with pytest.raises(ReferenceFitError, match="task must be"):
        fit_reference(mc_eval, model="m", task="clustering", target="label", prediction="pred")


def test_regression_and_multilabel_references(tmp_path):
    reg = fit_reference(regression_frame(500), model="price", task="regression", target="y", prediction="yhat",
                        features=["x", "kind"])
    loaded = load(reg.save(tmp_path / "price" / "default"))
    assert loaded.metrics["mae"] > 0 and loaded.estimator is not None and loaded.estimator.key == "dle"
    assert loaded.calibration["variable"] == "prediction" and loaded.calibration["metric"] == "mae"
    rng = np.random.default_rng(0)
    truth = ["|".join(sorted(rng.choice(list("abcd"), rng.integers(1, 4), replace=False))) for _ in range(400)]
    pred = [t if i % 3 else t + "|e" for i, t in enumerate(truth)]
    ml = fit_reference(pd.DataFrame({"t": truth, "p": pred}), model="tagger", task="multilabel", target="t",
                       prediction="p")
    art = load(ml.save(tmp_path / "tagger" / "default"))
    assert art.metrics["exact_match"] == pytest.approx(2 / 3, abs=0.01)
    assert art.distribution("set_size") is not None
    assert any(w.kind == "set_size" for w in art.weak_segments)  # the extra label makes larger sets wrong


def test_cli_fit_report_verify(tmp_path, capsys):
    data = tmp_path / "eval.csv"
    multiclass_frame(600).to_csv(data, index=False)
    out = tmp_path / "refs" / "router" / "default"
    rc = main(["fit", "--model", "router", "--data", str(data), "--task", "multiclass", "--target", "label",
               "--prediction", "pred", "--scores", *SCORES, "--classes", *CLASSES, "--features", "x", "region",
               "--segments", "region", "--out", str(out)])
    assert rc == 0 and (out / "manifest.json").exists()
    assert main(["verify", str(out)]) == 0
    rc = main(["report", str(out), "--out", str(tmp_path / "report")])
    text = capsys.readouterr().out
    assert rc == 0 and "Evaluation-set metrics" in text and "Weak segments" in text
    png = (tmp_path / "report" / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "data:image/png;base64," in (tmp_path / "report" / "report.html").read_text()
    (out / "schema.json").write_text("{}")
    assert main(["verify", str(out)]) == 1
    assert main(["fit", "--model", "m", "--data", str(tmp_path / "missing.csv"), "--task", "binary", "--target",
                 "y", "--prediction", "p", "--out", str(tmp_path / "x")]) == 2


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35
    assert wilson_interval(5, 0) != wilson_interval(5, 0)  # NaN for an empty slice


def test_cli_multilabel_fit_with_scores(tmp_path, capsys):
    frame = multilabel_frame(600)
    frame.to_csv(tmp_path / "tags.csv", index=False)
    out = tmp_path / "refs" / "tagger" / "default"
    assert main(["fit", "--model", "tagger", "--data", str(tmp_path / "tags.csv"), "--task", "multilabel",
                 "--target", "tags", "--prediction", "predicted", "--scores", *LABEL_SCORES, "--classes", *LABELS,
                 "--features", "x", "--out", str(out)]) == 0
    assert "estimator multilabel" in capsys.readouterr().out
    est = load(out).estimator
    assert est is not None and est.roles_.classes == tuple(LABELS) and est.roles_.scores == tuple(LABEL_SCORES)
    assert main(["fit", "--model", "tagger", "--data", str(tmp_path / "tags.csv"), "--task", "multilabel",
                 "--target", "tags", "--prediction", "predicted", "--scores", *LABEL_SCORES[:2],
                 "--out", str(tmp_path / "bad")]) == 2


def test_ranking_reference_baselines_and_stage(tmp_path):
    from otel_ml.processor.stage import PredictionBatch
    from otel_ml.processor.stages.estimation import EstimationStage
    from otel_ml.semconv import attributes as a
    from otel_ml.semconv import metrics as m
    from tests.estimation.test_stage import Clock, RecordingSink

    rng = np.random.default_rng(3)
    items = [f"i{j}" for j in range(30)]
    ranked = [list(rng.choice(items, size=int(rng.integers(3, 8)), replace=False)) for _ in range(400)]
    relevant = [[r[int(rng.integers(0, len(r)))]] if i % 4 else ["nowhere"] for i, r in enumerate(ranked)]
    frame = pd.DataFrame({"ranked": ["|".join(r) for r in ranked], "relevant": ["|".join(t) for t in relevant]})
    frame.to_csv(tmp_path / "search.csv", index=False)
    out = tmp_path / "refs" / "search" / "default"
    assert main(["fit", "--model", "search", "--data", str(tmp_path / "search.csv"), "--task", "ranking",
                 "--target", "relevant", "--prediction", "ranked", "--ranking-k", "1", "3", "--out", str(out)]) == 0
    art = load(out)
    assert art.estimator is None and set(art.classes) <= set(items)
    rr = [1.0 / (r.index(t[0]) + 1) if t[0] in r else 0.0 for r, t in zip(ranked, relevant, strict=True)]
    p1 = [float(t[0] in r[:1]) for r, t in zip(ranked, relevant, strict=True)]
    assert art.metrics["mrr"] == pytest.approx(np.mean(rr))
    assert art.metrics["precision_at_k@1"] == pytest.approx(np.mean(p1))
    assert art.metrics["ndcg_at_k@1"] == pytest.approx(np.mean(p1))
    assert {"precision_at_k@3", "ndcg_at_k@3"} <= set(art.metrics)
    assert art.distribution("set_size") is not None

    stage = EstimationStage(tmp_path / "refs", reload_interval=30.0, relabel_path=None, relabel_max_samples=0,
                            clock=Clock())
    lists = [["i1", "new-item", "i2"] + [f"i{j}" for j in range(3, 20)]] * 150  # longer lists, one unseen item
    batch = PredictionBatch(model="search", version="", task="ranking", classes=None,
                            ids=[str(i) for i in range(150)], timestamps=np.full(150, 1.7e9), values=None,
                            scores=np.full(150, np.nan), value_lists=lists, segments=[""] * 150)
    sink = RecordingSink()
    stage.on_predictions(batch, sink)
    stage.on_tick(1_700_000_000.0, sink)
    assert sink.total(m.UNSEEN_CLASS_PREDICTIONS, **{a.ML_CLASS: "new-item"}) == 150
    assert sink.gauge(m.REFERENCE_METRIC, **{a.ML_METRIC: "precision_at_k", a.ML_RANKING_K: "1"}) == [
        pytest.approx(art.metrics["precision_at_k@1"])]
    assert sink.gauge(m.REFERENCE_METRIC, **{a.ML_METRIC: "mrr"}) == [pytest.approx(art.metrics["mrr"])]
    assert sink.gauge(m.SET_SIZE_DRIFT, **{a.ML_DRIFT_METHOD: "jensen_shannon"})[0] > 0.5
    assert not sink.total(m.ESTIMATED_PREDICTIONS)
