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
from tests.estimation.data import CLASSES, SCORES, multiclass_frame, regression_frame


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
        fit_reference(mc_eval, model="m", task="ranking", target="label", prediction="pred")


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
