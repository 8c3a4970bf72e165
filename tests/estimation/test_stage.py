"""The processor's estimation stage: its counters equal offline estimates on the same data."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from otel_ml.estimation import metrics as em
from otel_ml.processor.stage import PredictionBatch
from otel_ml.processor.stages.estimation import EstimationStage
from otel_ml.reference import fit_reference, load
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.metrics import MetricSpec
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


class RecordingSink:
    """A MetricSink that sums counters and keeps the last gauge values."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.pinned: dict[str, dict[str, set[str]]] = {}

    def add(self, metric: MetricSpec, value: float, attributes: Any) -> None:
        assert metric.instrument in ("counter", "updowncounter") and set(attributes) <= set(metric.attributes)
        self.sums[(metric.name, tuple(sorted(attributes.items())))] += value

    def set_gauge(self, metric: MetricSpec, value: float, attributes: Any) -> None:
        assert metric.instrument == "gauge" and set(attributes) <= set(metric.attributes)
        self.gauges[(metric.name, tuple(sorted(attributes.items())))] = value

    def record(self, metric: MetricSpec, value: float, attributes: Any) -> None:
        raise AssertionError("the estimation stage records no histogram")

    def after_commit(self, fn: Any) -> None:
        fn()  # no transaction here: every call "commits"

    def reference_values(self, model: str, values: Any) -> None:
        self.pinned[model] = {k: set(v) for k, v in values.items()}

    def total(self, metric: MetricSpec, **where: str) -> float:
        return sum(v for (name, attrs), v in self.sums.items()
                   if name == metric.name and all(dict(attrs).get(k) == w for k, w in where.items()))

    def gauge(self, metric: MetricSpec, **where: str) -> list[float]:
        return [v for (name, attrs), v in self.gauges.items()
                if name == metric.name and all(dict(attrs).get(k) == w for k, w in where.items())]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def mc_batch(frame: pd.DataFrame, model: str = "router", version: str = "v1") -> PredictionBatch:
    n = len(frame)
    return PredictionBatch(
        model=model, version=version, task="multiclass", classes=tuple(reversed(CLASSES)),  # another order on purpose
        ids=[f"id{i}" for i in range(n)], timestamps=np.full(n, 1.7e9), values=list(frame.pred),
        scores=frame[SCORES].max(axis=1).to_numpy(), score_matrix=frame[list(reversed(SCORES))].to_numpy(),
        features={"x": list(frame.x), "region": list(frame.region)},
        segments=[f"region={r}" for r in frame.region])


@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("references")
    ref = multiclass_frame(1200)
    fit_reference(ref, model="router", task="multiclass", target="label", prediction="pred", scores=SCORES,
                  classes=CLASSES, features=["x", "region"], segments=["region"]).save(root / "router" / "default")
    fit_reference(binary_frame(800), model="fraud", task="binary", target="y", prediction="yhat", scores=["p"],
                  features=["x"]).save(root / "fraud" / "default")
    fit_reference(regression_frame(800), model="price", task="regression", target="y", prediction="yhat",
                  features=["x", "kind"]).save(root / "price" / "default")
    return root


def stage_for(refs: Path, tmp_path: Path, clock: Clock | None = None) -> EstimationStage:
    return EstimationStage(refs, reload_interval=30.0, relabel_path=tmp_path / "relabel.jsonl",
                           relabel_max_samples=1000, clock=clock or Clock())


def test_multiclass_counters_equal_offline_estimates(refs, tmp_path):
    stage = stage_for(refs, tmp_path)
    analysis = multiclass_frame(900, seed=21, shift=0.7)
    analysis.loc[:2, "pred"] = "Mystery"
    sink = RecordingSink()
    for part in np.array_split(np.arange(len(analysis)), 3):  # batch boundaries must not matter
        stage.on_predictions(mc_batch(analysis.iloc[part].reset_index(drop=True)), sink)
    est = load(refs / "router" / "default").estimator
    p, class_proba, pred = est.predict_details(analysis.drop(columns=["label"]))
    key = est.estimator_key
    assert sink.total(m.ESTIMATED_PREDICTIONS, **{a.ML_ESTIMATOR: key}) == len(analysis)
    assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) == pytest.approx(p.sum(), rel=1e-9)
    assert sink.total(m.ESTIMATED_CORRECT_VARIANCE) == pytest.approx(np.sum(p * (1 - p)), rel=1e-9)
    offline = est.estimate(analysis)
    windowed = sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) / sink.total(m.ESTIMATED_PREDICTIONS)
    assert windowed == pytest.approx(offline.value, rel=1e-9)
    sd = np.sqrt(sink.total(m.ESTIMATED_CORRECT_VARIANCE)) / len(analysis)
    assert sd == pytest.approx(offline.sampling_sd, rel=1e-9)
    tp, fp, fn = em.expected_outcomes(class_proba, pred)
    for k, cls in enumerate(CLASSES):
        for outcome, values in (("tp", tp), ("fp", fp), ("fn", fn)):
            got = sink.total(m.ESTIMATED_CLASSIFICATION_OUTCOMES, **{a.ML_CLASS: cls, a.ML_OUTCOME: outcome})
            assert got == pytest.approx(values[k], rel=1e-9)
    # Estimated macro F1 from the counters equals the offline estimate.
    f1 = em.f1_from_outcomes(tp, fp, fn)
    assert f1 == pytest.approx(est.estimate_metrics(analysis)["f1_macro"].value, rel=1e-9)
    # Per segment: the sum over segments equals the total, and each segment matches its rows.
    eu = (analysis.region == "eu").to_numpy()
    assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS, **{a.ML_SEGMENT: "region=eu"}) == pytest.approx(p[eu].sum())
    # Novelty and drift counters.
    assert sink.total(m.UNSEEN_CLASS_PREDICTIONS, **{a.ML_CLASS: "Mystery"}) == 3
    art = load(refs / "router" / "default")
    x_counts = art.feature_distributions["x"].count(analysis.x)
    for label, count in zip(art.feature_distributions["x"].labels, x_counts, strict=True):
        assert sink.total(m.FEATURE_BIN_OBSERVATIONS, **{a.ML_FEATURE_NAME: "x", a.ML_BIN: label}) == count
    for weak in art.weak_segments:
        if weak.kind == "feature":
            dist = art.feature_distributions[weak.column]
            hits = int((dist.bin_indices(analysis[weak.column]) == dist.labels.index(weak.bin)).sum())
            assert sink.total(m.WEAK_SEGMENT_PREDICTIONS, **{a.ML_WEAK_SEGMENT: weak.name}) == hits
    # Relabel samples: the unseen classes are among them, counted by reason.
    lines = [json.loads(x) for x in (tmp_path / "relabel.jsonl").read_text().splitlines()]
    assert {r["prediction_id"] for r in lines if r["reason"] == "unseen_class"} == {"id0", "id1", "id2"}
    assert sink.total(m.RELABEL_SAMPLES) == len(lines)
    assert all(set(r) >= {"time", "model", "prediction_id", "reason", "features", "estimated_correctness"}
               for r in lines)


def test_gauges_on_tick(refs, tmp_path):
    stage = stage_for(refs, tmp_path)
    sink = RecordingSink()
    stage.on_predictions(mc_batch(multiclass_frame(600, seed=3, shift=2.0)), sink)
    stage.on_tick(1_700_000_001.0, sink)
    art = load(refs / "router" / "default")
    got = sink.gauge(m.REFERENCE_METRIC, **{a.ML_MODEL_NAME: "router", a.ML_METRIC: "accuracy"})
    assert got == [pytest.approx(art.metrics["accuracy"])]
    assert sink.gauge(m.ESTIMATOR_ERROR_MARGIN, **{a.ML_METRIC: "accuracy"}) == [
        pytest.approx(art.estimator.error_margin_["accuracy"])]
    psi = sink.gauge(m.FEATURE_DRIFT, **{a.ML_FEATURE_NAME: "x", a.ML_DRIFT_METHOD: "psi"})
    stable = sink.gauge(m.FEATURE_DRIFT, **{a.ML_FEATURE_NAME: "region", a.ML_DRIFT_METHOD: "psi"})
    assert psi[0] > 0.5 > 0.1 > stable[0]
    assert len(sink.gauge(m.PREDICTION_DRIFT)) == 3


def test_binary_with_single_score_and_regression(refs, tmp_path):
    stage = stage_for(refs, tmp_path)
    sink = RecordingSink()
    frame = binary_frame(300, seed=8)
    batch = PredictionBatch(model="fraud", version="", task="binary", classes=None, ids=[str(i) for i in range(300)],
                            timestamps=np.full(300, 1.7e9), values=[str(v) for v in frame.yhat],
                            scores=frame.p.to_numpy(), features={"x": list(frame.x)}, segments=[""] * 300)
    stage.on_predictions(batch, sink)
    est = load(refs / "fraud" / "default").estimator
    assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) == pytest.approx(est.predict_correctness(frame).sum())
    assert all(a.ML_SEGMENT not in dict(attrs) for (_, attrs) in sink.sums)
    reg = regression_frame(200, seed=9)
    batch = PredictionBatch(model="price", version="v7", task="regression", classes=None,
                            ids=[str(i) for i in range(200)], timestamps=np.full(200, 1.7e9),
                            values=reg.yhat.to_numpy(), scores=np.full(200, np.nan),
                            features={"x": list(reg.x), "kind": list(reg.kind)}, segments=[""] * 200)
    stage.on_predictions(batch, sink)
    dle = load(refs / "price" / "default").estimator
    assert sink.total(m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR) == pytest.approx(dle.predict_correctness(reg).sum())
    assert sink.total(m.ESTIMATED_REGRESSION_SQUARED_ERROR) == pytest.approx(dle.predict_squared_error(reg).sum())
    # The variance counter rebuilds the offline MAE band's sampling term: 1.645 * sqrt(sum var) / n.
    mae = dle.estimate(reg)
    assert math.sqrt(sink.total(m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR_VARIANCE)) / 200 == pytest.approx(mae.sampling_sd)
    assert mae.sampling_sd > 0


def test_reload_on_change_and_refusal_keeps_previous(refs, tmp_path):
    root = tmp_path / "refs"
    src = refs / "fraud" / "default"
    clock = Clock()
    art = load(src)
    art.save(root / "fraud" / "default")
    stage = stage_for(root, tmp_path, clock)
    sink = RecordingSink()
    stage.on_tick(clock.now, sink)
    before = sink.gauge(m.REFERENCE_METRIC, **{a.ML_METRIC: "accuracy"})
    assert before == []  # no traffic yet: no runtime, no gauges
    frame = binary_frame(50, seed=1)
    batch = PredictionBatch(model="fraud", version="", task="binary", classes=("0", "1"), ids=list(map(str, range(50))),
                            timestamps=np.full(50, 1.7e9), values=[str(v) for v in frame.yhat],
                            scores=frame.p.to_numpy(), features={"x": list(frame.x)}, segments=[""] * 50)
    stage.on_predictions(batch, sink)
    stage.on_tick(clock.now, sink)
    assert sink.gauge(m.REFERENCE_METRIC, **{a.ML_METRIC: "accuracy"}) == [pytest.approx(art.metrics["accuracy"])]
    # A changed artifact is picked up after the reload interval.
    art.metrics["accuracy"] = 0.42
    art.save(root / "fraud" / "default")
    os.utime(root / "fraud" / "default" / "manifest.json", (clock.now + 5, clock.now + 5))
    clock.now += 31
    stage.on_tick(clock.now, sink)
    stage.on_predictions(batch, sink)
    stage.on_tick(clock.now, sink)
    assert sink.gauge(m.REFERENCE_METRIC, **{a.ML_METRIC: "accuracy"}) == [pytest.approx(0.42)]
    # A tampered artifact is refused and the loaded one stays in use.
    (root / "fraud" / "default" / "metrics.json").write_text('{"accuracy": 0.01}')
    os.utime(root / "fraud" / "default" / "manifest.json", (clock.now + 50, clock.now + 50))
    clock.now += 31
    stage.on_tick(clock.now, sink)
    stage.on_predictions(batch, sink)
    stage.on_tick(clock.now, sink)
    assert sink.gauge(m.REFERENCE_METRIC, **{a.ML_METRIC: "accuracy"}) == [pytest.approx(0.42)]


def test_models_without_reference_and_task_mismatch_are_ignored(refs, tmp_path):
    stage = stage_for(refs, tmp_path)
    sink = RecordingSink()
    frame = multiclass_frame(20)
    stage.on_predictions(mc_batch(frame, model="unknown"), sink)
    batch = mc_batch(frame, model="price")  # the price reference is for regression
    stage.on_predictions(batch, sink)
    assert not sink.sums


def test_through_the_real_pipeline_counters_equal_offline(refs, tmp_path):
    """OTLP events -> decode -> the processor's pipeline with the stage loaded from config -> persisted counters."""
    from otel_ml.processor import config as cfg
    from otel_ml.processor.decode import decode_request
    from otel_ml.processor.stage import load_stages
    from otel_ml.processor.step import Processor
    from otel_ml.processor.store import MemoryJoinStore
    from tests.processor.conftest import prediction_event
    from tests.support import otlp_events as ev

    clock = Clock()
    config = cfg.from_mapping({"reference": {"directory": str(refs)},
                               "relabel": {"path": str(tmp_path / "r.jsonl"), "max_samples": 100}})
    pipeline = Processor(config, MemoryJoinStore(config.store.label_window, config.store.max_pending),
                         load_stages(config, clock), clock)
    analysis = multiclass_frame(300, seed=31, shift=-0.5)
    records = [prediction_event(f"p{i}", model="router", task="multiclass", value=row["pred"], **{
        a.ML_MODEL_VERSION: "v9", a.ML_PREDICTION_SCORES: [float(row[c]) for c in SCORES],
        a.ML_PREDICTION_CLASSES: CLASSES, "ml.feature.x": float(row["x"]), "ml.feature.region": row["region"],
        "ml.segment.region": row["region"]}) for i, row in enumerate(analysis.to_dict("records"))]
    for i in range(0, len(records), 64):
        pipeline.process([decode_request(ev.request(records[i:i + 64]), clock(), pipeline.wants_extras)])

    def total(spec: MetricSpec, **match: str) -> float:
        return sum(v for attrs, v in pipeline.aggregates.snapshot(spec.name)
                   if all(dict(attrs).get(k) == w for k, w in match.items()))

    est = load(refs / "router" / "default").estimator
    p = est.predict_correctness(analysis)
    assert total(m.ESTIMATED_PREDICTIONS) == 300
    assert total(m.ESTIMATED_CORRECT_PREDICTIONS) == pytest.approx(p.sum(), rel=1e-9)
    assert total(m.ESTIMATED_CORRECT_VARIANCE) == pytest.approx(np.sum(p * (1 - p)), rel=1e-9)
    assert total(m.ESTIMATED_CORRECT_PREDICTIONS, **{a.ML_SEGMENT: "region=us", a.ML_MODEL_VERSION: "v9"}) == \
        pytest.approx(p[(analysis.region == "us").to_numpy()].sum(), rel=1e-9)
    pipeline.tick()
    assert pipeline.aggregates.gauge_snapshot(m.REFERENCE_METRIC.name)
    pipeline.close()


def test_multilabel_novelty_set_size_and_weak_slices(tmp_path):
    rng = np.random.default_rng(0)
    truth = ["|".join(sorted(rng.choice(list("abcd"), rng.integers(1, 3), replace=False))) for _ in range(600)]
    pred = [t if i % 3 else t + "|e" for i, t in enumerate(truth)]  # larger sets are the wrong ones
    art = fit_reference(pd.DataFrame({"t": truth, "p": pred}), model="tagger", task="multilabel", target="t",
                        prediction="p")
    art.save(tmp_path / "refs" / "tagger" / "default")
    weak = [w for w in art.weak_segments if w.kind == "set_size"]
    assert weak
    stage = EstimationStage(tmp_path / "refs", reload_interval=30.0, relabel_path=tmp_path / "r.jsonl",
                            relabel_max_samples=100, clock=Clock())
    lists = [["a"], ["a", "b", "e"], ["zzz", "a", "b", "c"], ["b"]] * 50
    batch = PredictionBatch(model="tagger", version="", task="multilabel", classes=None,
                            ids=[str(i) for i in range(200)], timestamps=np.full(200, 1.7e9), values=None,
                            scores=np.full(200, np.nan), value_lists=lists, segments=[""] * 200)
    sink = RecordingSink()
    stage.on_predictions(batch, sink)
    stage.on_tick(1_700_000_000.0, sink)
    assert sink.total(m.UNSEEN_CLASS_PREDICTIONS, **{a.ML_CLASS: "zzz"}) == 50
    est = load(tmp_path / "refs" / "tagger" / "default").estimator
    p = est.predict_correctness(pd.DataFrame({"p": ["|".join(s) for s in lists]}))
    assert sink.total(m.ESTIMATED_PREDICTIONS) == 200
    assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) == pytest.approx(p.sum())
    size = art.distribution("set_size")
    for w in weak:
        hits = int((size.bin_indices([float(len(s)) for s in lists]) == size.labels.index(w.bin)).sum())
        assert sink.total(m.WEAK_SEGMENT_PREDICTIONS, **{a.ML_WEAK_SEGMENT: w.name}) == hits
    drift = sink.gauge(m.SET_SIZE_DRIFT, **{a.ML_DRIFT_METHOD: "jensen_shannon"})
    assert len(drift) == 1 and drift[0] > 0.1
    assert sink.total(m.RELABEL_SAMPLES, **{a.ML_REASON: "unseen_class"}) == 10  # capped per batch


def test_multilabel_counters_equal_offline_estimates(tmp_path):
    ref = multilabel_frame(1500)
    art = fit_reference(ref, model="tagger", task="multilabel", target="tags", prediction="predicted",
                        scores=LABEL_SCORES, classes=LABELS, features=["x"], segments=["region"])
    art.save(tmp_path / "refs" / "tagger" / "default")
    est = load(tmp_path / "refs" / "tagger" / "default").estimator
    assert est is not None and est.estimator_key == "multilabel"
    stage = stage_for(tmp_path / "refs", tmp_path)
    frame = multilabel_frame(300, seed=21, shift=0.7)
    order = [2, 0, 3, 1]  # the wire's class order need not be the reference's
    batch = PredictionBatch(model="tagger", version="v1", task="multilabel", classes=tuple(LABELS[i] for i in order),
                            ids=[str(i) for i in range(300)], timestamps=np.full(300, 1.7e9), values=None,
                            scores=np.full(300, np.nan),
                            score_matrix=frame[[LABEL_SCORES[i] for i in order]].to_numpy(),
                            value_lists=[[t for t in v.split("|") if t] for v in frame.predicted],
                            features={"x": list(frame.x)}, segments=[f"region={r}" for r in frame.region])
    sink = RecordingSink()
    stage.on_predictions(batch, sink)
    p, q, d = est.predict_details(frame)
    assert sink.total(m.ESTIMATED_PREDICTIONS) == 300
    assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) == pytest.approx(p.sum())
    assert sink.total(m.ESTIMATED_CORRECT_VARIANCE) == pytest.approx(np.sum(p * (1 - p)))
    apac = (frame.region == "apac").to_numpy()
    assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS, **{a.ML_SEGMENT: "region=apac"}) == pytest.approx(p[apac].sum())
    for j, label in enumerate(LABELS):
        tp = sink.total(m.ESTIMATED_CLASSIFICATION_OUTCOMES, **{a.ML_CLASS: label, a.ML_OUTCOME: "tp"})
        fn = sink.total(m.ESTIMATED_CLASSIFICATION_OUTCOMES, **{a.ML_CLASS: label, a.ML_OUTCOME: "fn"})
        assert tp == pytest.approx(float((d[:, j] * q[:, j]).sum()))
        assert fn == pytest.approx(float(((~d[:, j]) * q[:, j]).sum()))
    # The PromQL ratio equals the offline window estimate.
    e = est.estimate(frame)
    assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) / 300 == pytest.approx(e.value)


def test_reference_values_are_pinned_in_the_cardinality_caps(refs, tmp_path):
    """Junk classes and models fill the caps first; the classes, versions and features of a loaded reference and
    the model itself still get their own series (the stage declares them on load, the caps pin them)."""
    from otel_ml.processor import config as cfg
    from otel_ml.processor.decode import decode_request
    from otel_ml.processor.stage import load_stages
    from otel_ml.processor.step import Processor
    from otel_ml.processor.store import MemoryJoinStore
    from tests.processor.conftest import prediction_event
    from tests.support import otlp_events as ev

    stage = stage_for(refs, tmp_path)
    sink = RecordingSink()
    stage.on_tick(0.0, sink)
    art = load(refs / "router" / "default")
    bins = {label for d in (*art.feature_distributions.values(), art.distribution("prediction")) for label in d.labels}
    assert sink.pinned["router"] == {a.ML_MODEL_VERSION: set(), a.ML_CLASS: set(CLASSES),
                                     a.ML_FEATURE_NAME: {"x", "region"}, a.ML_BIN: bins,
                                     a.ML_WEAK_SEGMENT: {w.name for w in art.weak_segments}}
    stage.on_tick(60.0, sink)  # nothing changed: nothing declared again
    assert set(sink.pinned) == {"router", "fraud", "price"}

    clock = Clock()
    config = cfg.from_mapping({"reference": {"directory": str(refs)}, "metrics": {"cardinality_limit": 4},
                               "relabel": {"path": str(tmp_path / "r.jsonl"), "max_samples": 100}})
    proc = Processor(config, MemoryJoinStore(config.store.label_window, config.store.max_pending),
                     load_stages(config, clock), clock)

    def send(records: list) -> None:
        proc.process([decode_request(ev.request(records), clock(), proc.wants_extras)])

    send([prediction_event(f"j{i}", model=f"junk-model-{i}") for i in range(20)])
    send([prediction_event(f"c{i}", model="router", task="multiclass", value=f"junk-class-{i}") for i in range(20)])
    proc.tick()  # the stage loads the references and declares their values
    send([prediction_event(f"r{i}", model="router", task="multiclass", value=c) for i, c in enumerate(CLASSES)])
    classes = {dict(attrs)[a.ML_CLASS] for attrs, _ in proc.aggregates.snapshot(m.PREDICTIONS.name)
               if dict(attrs)[a.ML_MODEL_NAME] == "router"}
    assert set(CLASSES) <= classes
    assert proc.capper.pinned("", a.ML_MODEL_NAME) == {"router", "fraud", "price"}
    proc.close()


# --- issue #16 / #12.3: estimated ROC AUC, unknown correctness, missing features ----------------------------------
def _pipeline(refs: Path, tmp_path: Path, clock: Clock, auc_window: int = 10_000) -> Any:
    from otel_ml.processor import config as cfg
    from otel_ml.processor.stage import load_stages
    from otel_ml.processor.step import Processor
    from otel_ml.processor.store import MemoryJoinStore

    config = cfg.from_mapping({"reference": {"directory": str(refs)}, "metrics": {"auc_window": auc_window},
                               "relabel": {"path": str(tmp_path / "r.jsonl"), "max_samples": 100}})
    return Processor(config, MemoryJoinStore(config.store.label_window, config.store.max_pending),
                     load_stages(config, clock), clock)


def test_estimated_roc_auc_gauges_against_scikit_learn_on_labeled_windows(refs, tmp_path):
    """Binary and multiclass labeled windows (pairs) through the processor: the estimated ROC AUC gauge equals the
    offline estimate of the same window and is close to scikit-learn's on the window's labels; the binary window
    also has the realized gauge, equal to scikit-learn's exactly."""
    from sklearn.metrics import roc_auc_score

    from otel_ml.processor.decode import decode_request
    from otel_ml.processor.stages.estimation.windows import AUC_INTERVAL_S
    from tests.processor.conftest import prediction_event
    from tests.support import otlp_events as ev

    clock = Clock()
    pipeline = _pipeline(refs, tmp_path, clock, auc_window=1500)
    fraud = binary_frame(2000, seed=40)
    router = multiclass_frame(2000, seed=41)
    records = [prediction_event(f"b{i}", model="fraud", task="binary", value=str(r["yhat"]), **{
        a.ML_PREDICTION_SCORE: float(r["p"]), a.ML_PREDICTION_CLASSES: ["0", "1"], a.ML_LABEL_VALUE: str(r["y"]),
        "ml.feature.x": float(r["x"])}) for i, r in enumerate(fraud.to_dict("records"))]
    records += [prediction_event(f"m{i}", model="router", task="multiclass", value=r["pred"], **{
        a.ML_PREDICTION_SCORES: [float(r[c]) for c in SCORES], a.ML_PREDICTION_CLASSES: CLASSES,
        a.ML_LABEL_VALUE: r["label"], "ml.feature.x": float(r["x"]), "ml.feature.region": r["region"]})
        for i, r in enumerate(router.to_dict("records"))]
    for i in range(0, len(records), 250):
        pipeline.process([decode_request(ev.request(records[i:i + 250]), clock(), pipeline.wants_extras)])
    clock.now += AUC_INTERVAL_S  # the estimated gauge is recomputed at most every AUC_INTERVAL_S
    pipeline.tick()
    gauges = {(name, dict(attrs)[a.ML_MODEL_NAME]): v for name in (m.ESTIMATED_CLASSIFICATION_ROC_AUC.name,
                                                                   m.CLASSIFICATION_ROC_AUC.name)
              for attrs, v in pipeline.aggregates.gauge_snapshot(name)}
    window_b = fraud.iloc[-1500:]  # the gauges cover the most recent auc_window predictions
    window_m = router.iloc[-1500:]
    realized_b = roc_auc_score(window_b.y, window_b.p)
    realized_m = roc_auc_score(window_m.label, window_m[SCORES].to_numpy(), multi_class="ovr", labels=CLASSES)
    est_b = load(refs / "fraud" / "default").estimator.estimate_metrics(window_b, ["roc_auc"])["roc_auc"]
    est_m = load(refs / "router" / "default").estimator.estimate_metrics(window_m, ["roc_auc"])["roc_auc"]
    assert gauges[(m.CLASSIFICATION_ROC_AUC.name, "fraud")] == pytest.approx(realized_b, abs=1e-9)
    assert gauges[(m.ESTIMATED_CLASSIFICATION_ROC_AUC.name, "fraud")] == pytest.approx(est_b.value, abs=1e-9)
    assert gauges[(m.ESTIMATED_CLASSIFICATION_ROC_AUC.name, "router")] == pytest.approx(est_m.value, abs=1e-9)
    for e, realized in ((est_b, realized_b), (est_m, realized_m)):  # the realized AUC's noise + the estimator's error
        assert abs(e.value - realized) < 3 * e.sampling_sd + e.error_margin and e.contains(realized)
    pipeline.close()


def test_unknown_correctness_pessimistic_optimistic_and_calibration_counters(refs, tmp_path):
    stage = stage_for(refs, tmp_path)
    est = load(refs / "router" / "default").estimator
    healthy = multiclass_frame(600, seed=50)
    sink = RecordingSink()
    stage.on_predictions(mc_batch(healthy), sink)
    correct = sink.total(m.ESTIMATED_CORRECT_PREDICTIONS)
    # Covered traffic: the pessimistic and optimistic sums equal the estimate (within the rolling novel share).
    assert sink.total(m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS) == pytest.approx(correct, rel=0.03)
    assert sink.total(m.ESTIMATED_OPTIMISTIC_CORRECT_PREDICTIONS) == pytest.approx(correct, rel=0.03)
    assert sink.total(m.ESTIMATED_CORRECT_CALIBRATION_SD) == pytest.approx(
        est.predict_rows(healthy).calibration_sd.sum(), rel=1e-9)
    assert sink.total(m.ESTIMATED_UNKNOWN_PREDICTIONS) <= 3
    novel = multiclass_frame(600, seed=51)
    novel.loc[:199, "x"] += 50.0  # inputs far from anything in the reference
    novel.loc[200:259, "pred"] = "Mystery"
    sink = RecordingSink()
    stage.on_predictions(mc_batch(novel), sink)
    rows = est.predict_rows(novel)
    assert sink.total(m.ESTIMATED_UNKNOWN_PREDICTIONS, **{a.ML_REASON: "out_of_support"}) == 200
    assert sink.total(m.ESTIMATED_UNKNOWN_PREDICTIONS, **{a.ML_REASON: "unseen_class"}) == 60
    assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) == pytest.approx(rows.p.sum(), rel=1e-9)
    pess = sink.total(m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS)
    opt = sink.total(m.ESTIMATED_OPTIMISTIC_CORRECT_PREDICTIONS)
    assert pess < rows.p[~rows.unseen].sum() * 0.85  # the novel share of the window was discounted
    assert opt >= sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) + 60 * 0.5
    by_segment = sink.total(m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS, **{a.ML_SEGMENT: "region=eu"})
    assert 0 < by_segment < pess


def test_missing_features_are_counted_per_feature(refs, tmp_path):
    stage = stage_for(refs, tmp_path)
    frame = multiclass_frame(300, seed=52)
    batch = mc_batch(frame)
    batch.features["x"] = [None if i < 40 else v for i, v in enumerate(batch.features["x"])]
    batch.features["x"][40] = float("nan")
    for name in ("x", "region"):  # the last 50 rows carry no feature at all: sampled out, not "missing"
        batch.features[name][250:] = [None] * 50
    sink = RecordingSink()
    stage.on_predictions(batch, sink)
    assert sink.total(m.FEATURE_MISSING, **{a.ML_FEATURE_NAME: "x"}) == 41
    assert sink.total(m.FEATURE_MISSING, **{a.ML_FEATURE_NAME: "region"}) == 0
    del batch.features["region"]  # a renamed column: absent from every record that has features
    sink = RecordingSink()
    stage.on_predictions(batch, sink)
    assert sink.total(m.FEATURE_MISSING, **{a.ML_FEATURE_NAME: "region"}) == 250 - 41


def test_binary_score_is_read_by_the_records_class_order(refs, tmp_path):
    stage = stage_for(refs, tmp_path)
    frame = binary_frame(300, seed=53)
    est = load(refs / "fraud" / "default").estimator
    expected = est.predict_correctness(frame).sum()
    for classes, score in ((("0", "1"), frame.p), (("1", "0"), 1 - frame.p), (None, frame.p)):
        batch = PredictionBatch(model="fraud", version="", task="binary", classes=classes,
                                ids=[str(i) for i in range(300)], timestamps=np.full(300, 1.7e9),
                                values=[str(v) for v in frame.yhat], scores=score.to_numpy(),
                                features={"x": list(frame.x)}, segments=[""] * 300)
        sink = RecordingSink()
        stage.on_predictions(batch, sink)
        assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) == pytest.approx(expected, rel=1e-9), classes


def test_junk_versions_do_not_grow_the_stage(refs, tmp_path):
    from otel_ml.processor.stages.estimation.artifacts import MAX_RUNTIMES_PER_MODEL

    stage = stage_for(refs, tmp_path)
    frame = multiclass_frame(20, seed=60)
    sink = RecordingSink()
    stage.on_predictions(mc_batch(frame, version="v1"), sink)
    for i in range(3 * MAX_RUNTIMES_PER_MODEL):
        stage.on_predictions(mc_batch(frame, version=f"junk{i}"), sink)
        stage.on_predictions(mc_batch(frame, version="v1"), sink)  # the live version stays recently used
        stage.on_predictions(mc_batch(frame, model="price", version=f"junk{i}"), sink)  # task mismatch: warned
    router = [k for k in stage.artifacts.runtimes if k[0] == "router"]
    assert len(router) == MAX_RUNTIMES_PER_MODEL and ("router", "v1") in router
    assert len(stage._warned) == 1


def test_multilabel_partial_scores_are_estimated_per_label(tmp_path):
    """NaN = a label the model did not score: the estimator falls back to that label's decision rate for it, and
    the stage's counters equal the offline estimate of the same frame."""
    ref = multilabel_frame(1200)
    art = fit_reference(ref, model="tagger", task="multilabel", target="tags", prediction="predicted",
                        scores=LABEL_SCORES, classes=LABELS, method="multilabel")
    art.save(tmp_path / "refs" / "tagger" / "default")
    est = load(tmp_path / "refs" / "tagger" / "default").estimator
    stage = stage_for(tmp_path / "refs", tmp_path)
    frame = multilabel_frame(200, seed=22)
    unscored = frame[LABEL_SCORES].to_numpy() < 0.5  # scores only for the labels it predicts
    frame[LABEL_SCORES] = np.where(unscored, np.nan, frame[LABEL_SCORES].to_numpy())
    batch = PredictionBatch(model="tagger", version="", task="multilabel", classes=tuple(LABELS),
                            ids=[str(i) for i in range(200)], timestamps=np.full(200, 1.7e9), values=None,
                            scores=np.full(200, np.nan), score_matrix=frame[LABEL_SCORES].to_numpy(),
                            value_lists=[[t for t in v.split("|") if t] for v in frame.predicted], segments=[""] * 200)
    sink = RecordingSink()
    stage.on_predictions(batch, sink)
    p = est.predict_correctness(frame)
    assert np.all(np.isfinite(p))
    assert sink.total(m.ESTIMATED_CORRECT_PREDICTIONS) == pytest.approx(p.sum(), rel=1e-9)


def test_a_retried_step_leaves_the_stage_windows_as_one_pass(refs, tmp_path):
    """A group commit that fails is rolled back and retried with the same records: the stage's windows (drift,
    novelty, scores) change only once the step committed, so they count the retried predictions once."""
    from otel_ml.processor.decode import decode_request
    from tests.processor.conftest import prediction_event
    from tests.support import otlp_events as ev

    clock = Clock()
    pipeline = _pipeline(refs, tmp_path, clock)
    frame = multiclass_frame(200, seed=61)
    records = [prediction_event(f"r{i}", model="router", task="multiclass", value=r["pred"], **{
        a.ML_PREDICTION_SCORES: [float(r[c]) for c in SCORES], a.ML_PREDICTION_CLASSES: CLASSES,
        "ml.feature.x": float(r["x"]), "ml.feature.region": r["region"]})
        for i, r in enumerate(frame.to_dict("records"))]
    decoded = decode_request(ev.request(records), clock(), pipeline.wants_extras)
    commit = pipeline.store.commit
    failures = iter([True])

    def flaky_commit(*args: Any, **kwargs: Any) -> Any:
        if next(failures, False):
            raise OSError("disk hiccup")
        return commit(*args, **kwargs)

    pipeline.store.commit = flaky_commit
    with pytest.raises(OSError):
        pipeline.process([decoded])
    stage = pipeline.stage_runner.stages[0]
    assert not stage.artifacts.runtimes or all(rt.features["x"].observations == 0
                                               for rt in stage.artifacts.runtimes.values())
    pipeline.process([decoded])  # the retry
    rt = stage.artifacts.runtimes[("router", "")]
    assert rt.features["x"].observations == 200 and rt.prediction.observations == 200
    assert rt.novelty._ring.filled == 200 and rt.scores._ring.filled == 200
    total = sum(v for _, v in pipeline.aggregates.snapshot(m.ESTIMATED_PREDICTIONS.name))
    assert total == 200
    pipeline.close()
    relabel = tmp_path / "r.jsonl"
    assert relabel.stat().st_mode & 0o777 == 0o600  # samples carry feature values: owner-only
