"""The processor step without a network: OTLP requests -> decode -> join -> exported counters, vs scikit-learn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from otel_ml.processor import config as cfg
from otel_ml.processor.decode import decode_request
from otel_ml.processor.stage import BaseStage, MetricSink, PredictionBatch
from otel_ml.processor.step import Processor
from otel_ml.processor.store import MemoryJoinStore, SqliteJoinStore
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from tests.processor.conftest import label_event, prediction_event
from tests.support import otlp_events as ev

RNG = np.random.default_rng(3)


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _pipeline(tmp_path: Path | None = None, stages: Sequence[Any] = (), **raw: Any) -> Processor:
    config = cfg.from_mapping(raw)
    store = (SqliteJoinStore(tmp_path / "s.db", config.store.label_window, config.store.max_pending)
             if tmp_path else MemoryJoinStore(config.store.label_window, config.store.max_pending))
    return Processor(config, store, stages, Clock())


def _send(p: Processor, records: list[Any], chunk: int = 97) -> list[Any]:
    out = []
    for i in range(0, len(records), chunk):
        req = ev.request(records[i:i + chunk])
        out += p.process([decode_request(req, p.clock(), p.wants_extras)])
    return out


def _total(p: Processor, spec: m.MetricSpec, **match: str) -> float:
    keys = {a.ML_CLASS: "cls", a.ML_OUTCOME: "outcome", a.ML_RANKING_K: "k", a.ML_REASON: "reason"}
    total = 0.0
    for attrs, v in p.aggregates.snapshot(spec.name):
        d = {keys.get(k, k): val for k, val in attrs}
        if all(d.get(k) == val for k, val in match.items()):
            total += v
    return total


def test_multiclass_string_labels_vs_sklearn() -> None:
    names = ["cat", "dog", "émeu", "x y"]
    n = 600
    t = [names[i] for i in RNG.integers(0, 4, n)]
    pr = [x if RNG.random() < 0.6 else names[RNG.integers(0, 4)] for x in t]
    p = _pipeline()
    recs = [prediction_event(f"p{i}", task="multiclass", value=pr[i], **{"ml.segment.region": ["eu", "us"][i % 2]})
            for i in range(n)]
    labels = [label_event(f"p{i}", value=t[i]) for i in range(n)]
    # labels of the first third overtake their predictions; the rest arrive after
    _send(p, labels[:200] + recs + labels[200:])
    assert _total(p, m.LABELED_PREDICTIONS) == n
    assert _total(p, m.CORRECT_PREDICTIONS) / _total(p, m.LABELED_PREDICTIONS) == pytest.approx(
        skm.accuracy_score(t, pr))
    outcome = {c: [_total(p, m.CLASSIFICATION_OUTCOMES, cls=c, outcome=o) for o in ("tp", "fp", "fn")]
               for c in names}
    prec, rec, f1, _ = skm.precision_recall_fscore_support(t, pr, labels=names, zero_division=0)
    for i, c in enumerate(names):
        tp, fp, fn = outcome[c]
        assert tp / (tp + fp) == pytest.approx(prec[i])
        assert tp / (tp + fn) == pytest.approx(rec[i])
        assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(f1[i])
    tp, fp, fn = (sum(outcome[c][j] for c in names) for j in range(3))
    micro = skm.precision_recall_fscore_support(t, pr, average="micro", zero_division=0)
    assert (tp / (tp + fp), tp / (tp + fn)) == pytest.approx(micro[:2])
    macro_f1 = np.mean([2 * o[0] / (2 * o[0] + o[1] + o[2]) for o in outcome.values()])
    assert macro_f1 == pytest.approx(skm.f1_score(t, pr, average="macro"))
    assert _total(p, m.PREDICTIONS) == n and _total(p, m.LABELS) == n
    assert _total(p, m.PREDICTIONS, **{a.ML_SEGMENT: "region=eu"}) == n / 2


def test_binary_auc_gauge_and_single_class_window() -> None:
    n = 400
    y = RNG.integers(0, 2, n)
    s = np.clip(np.where(y == 1, RNG.normal(0.65, 0.2, n), RNG.normal(0.35, 0.2, n)), 0, 1)
    p = _pipeline(metrics={"auc_window": 1000, "otlp": None})
    recs = [prediction_event(f"p{i}", value=str(int(s[i] > 0.5)), **{a.ML_PREDICTION_SCORE: float(s[i]),
            a.ML_PREDICTION_CLASSES: ["0", "1"], a.ML_LABEL_VALUE: str(y[i])}) for i in range(n)]
    _send(p, recs)
    p.tick()
    [(_, auc)] = p.aggregates.gauge_snapshot(m.CLASSIFICATION_ROC_AUC.name)
    assert auc == pytest.approx(skm.roc_auc_score(y, s))
    # a window holding one class only has no AUC: the point disappears (not 0.5, not a stale value)
    q = _pipeline(metrics={"auc_window": 50, "otlp": None})
    _send(q, [prediction_event(f"q{i}", value="1", **{a.ML_PREDICTION_SCORE: 0.9, a.ML_LABEL_VALUE: "1"})
              for i in range(60)])
    q.tick()
    assert q.aggregates.gauge_snapshot(m.CLASSIFICATION_ROC_AUC.name) == []


def test_regression_vs_sklearn_chunked_equals_one_batch() -> None:
    n = 300
    t = RNG.normal(50, 10, n)
    pr = t + RNG.normal(1, 4, n)
    recs = [prediction_event(f"r{i}", task="regression", value=float(pr[i])) for i in range(n)]
    recs += [label_event(f"r{i}", value=float(t[i])) for i in range(n)]
    totals = []
    for chunk in (7, 1000):
        p = _pipeline()
        _send(p, recs, chunk)
        lab = _total(p, m.LABELED_PREDICTIONS)
        assert _total(p, m.REGRESSION_ABSOLUTE_ERROR) / lab == pytest.approx(skm.mean_absolute_error(t, pr))
        assert math.sqrt(_total(p, m.REGRESSION_SQUARED_ERROR) / lab) == pytest.approx(
            math.sqrt(skm.mean_squared_error(t, pr)))
        assert _total(p, m.REGRESSION_SIGNED_ERROR) / lab == pytest.approx(float(np.mean(pr - t)))
        totals.append({k: round(v, 6) for k, v in p.aggregates.all_totals().items()
                       if not k[0].startswith("ml.processor")})
    assert totals[0] == totals[1]


def test_ranking_vs_oracles() -> None:
    n, items = 120, [f"i{j}" for j in range(6)]
    ranked = [list(RNG.permutation(items)) for _ in range(n)]
    relevant = [[x for x in items if RNG.random() < 0.35] for _ in range(n)]
    recs = [prediction_event(f"k{i}", task="ranking", value=ranked[i]) for i in range(n)]
    recs += [label_event(f"k{i}", value=relevant[i]) for i in range(n) if relevant[i]]
    recs += [label_event(f"k{i}", value=[], **{}) for i in range(n) if not relevant[i]]
    p = _pipeline(metrics={"ranking_k": [1, 3], "otlp": None})
    _send(p, recs)
    lab = _total(p, m.LABELED_PREDICTIONS)
    assert lab == n
    mrr = np.mean([next((1 / (j + 1) for j, x in enumerate(r) if x in t), 0.0) for r, t in zip(ranked, relevant,
                                                                                               strict=True)])
    assert _total(p, m.RANKING_RECIPROCAL_RANK) / lab == pytest.approx(mrr)
    y_true = np.array([[1.0 if u in t else 0.0 for u in items] for t in relevant])
    y_score = np.array([[len(r) - r.index(u) for u in items] for r in ranked], dtype=float)
    for k in (1, 3):
        assert _total(p, m.RANKING_NDCG_AT_K, k=str(k)) / lab == pytest.approx(skm.ndcg_score(y_true, y_score, k=k))
        prec = np.mean([sum(x in t for x in r[:k]) / k for r, t in zip(ranked, relevant, strict=True)])
        assert _total(p, m.RANKING_PRECISION_AT_K, k=str(k)) / lab == pytest.approx(prec)


def test_multilabel_vs_sklearn() -> None:
    labels = ["a", "b", "c"]
    n = 200
    t = [[x for x in labels if RNG.random() < 0.5] for _ in range(n)]
    pr = [[x for x in labels if (x in ti) == (RNG.random() < 0.8)] for ti in t]
    p = _pipeline()
    _send(p, [prediction_event(f"l{i}", task="multilabel", value=pr[i]) for i in range(n)]
          + [label_event(f"l{i}", value=t[i]) for i in range(n)])
    from sklearn.preprocessing import MultiLabelBinarizer

    mlb = MultiLabelBinarizer(classes=labels).fit([labels])
    T, P = mlb.transform(t), mlb.transform(pr)
    assert _total(p, m.CORRECT_PREDICTIONS) / n == pytest.approx(skm.accuracy_score(T, P))
    prec, rec, _, _ = skm.precision_recall_fscore_support(T, P, zero_division=0)
    for i, c in enumerate(labels):
        tp, fp, fn = (_total(p, m.CLASSIFICATION_OUTCOMES, cls=c, outcome=o) for o in ("tp", "fp", "fn"))
        assert (tp / (tp + fp) if tp + fp else 0.0) == pytest.approx(prec[i])
        assert tp / (tp + fn) == pytest.approx(rec[i])
    size_sum = p.aggregates.value(f"{m.MULTILABEL_PREDICTED_LABELS.name}|sum")
    size_count = p.aggregates.value(f"{m.MULTILABEL_PREDICTED_LABELS.name}|count")
    assert size_sum / size_count == pytest.approx(P.sum(axis=1).mean())


def _set_size_histogram(p: Processor) -> tuple[float, float, list[float]]:
    name = m.MULTILABEL_PREDICTED_LABELS.name
    buckets = [p.aggregates.value(f"{name}|b{i}") for i in range(len(m.MULTILABEL_PREDICTED_LABELS.buckets) + 1)]
    return p.aggregates.value(f"{name}|sum"), p.aggregates.value(f"{name}|count"), buckets


def test_predicted_labels_recorded_at_prediction_time_once(tmp_path: Path) -> None:
    """Every accepted multilabel prediction counts once, labeled or not, re-sent or not, across a restart."""
    labels = [f"t{j}" for j in range(12)]
    n = 300
    sets = [[x for x in labels if RNG.random() < RNG.uniform(0.0, 0.6)] for _ in range(n)]
    preds = [prediction_event(f"m{i}", task="multilabel", value=sets[i]) for i in range(n)]
    p = _pipeline(tmp_path)
    _send(p, preds[:200])  # no label at all yet: the histogram must already hold them
    sizes = np.array([len(s) for s in sets], dtype=np.float64)
    total, count, _ = _set_size_histogram(p)
    assert (total, count) == (sizes[:200].sum(), 200)
    _send(p, preds[:200] + [label_event(f"m{i}", value=sets[i]) for i in range(0, 200, 3)])  # re-sent + labels
    assert _set_size_histogram(p)[:2] == (sizes[:200].sum(), 200)
    p.close()
    p = _pipeline(tmp_path)  # restart: totals restored, re-sends still idempotent
    _send(p, preds[150:] + preds[150:])
    total, count, buckets = _set_size_histogram(p)
    assert (total, count) == (sizes.sum(), n)
    edges = np.asarray(m.MULTILABEL_PREDICTED_LABELS.buckets)
    oracle = np.bincount(np.searchsorted(edges, sizes, side="left"), minlength=edges.size + 1)
    assert buckets == oracle.tolist()
    assert _total(p, m.PREDICTIONS) == n
    p.close()


def test_resent_request_changes_nothing(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    req = ev.request([prediction_event("a"), label_event("a"), prediction_event("b"), label_event("c")])
    p.process([decode_request(req, p.clock())])
    before = {k: v for k, v in p.aggregates.all_totals().items() if not k[0].startswith("ml.processor.records")}
    for _ in range(3):
        p.process([decode_request(req, p.clock())])
    after = {k: v for k, v in p.aggregates.all_totals().items() if not k[0].startswith("ml.processor.records")}
    assert before == after
    p.close()


def test_expiry_and_label_delay(tmp_path: Path) -> None:
    p = _pipeline(tmp_path, store={"label_window": "1h", "expire_interval": "1s"})
    clock = p.clock
    assert isinstance(clock, Clock)
    _send(p, [prediction_event("never", **{"ml.segment.tier": "gold"}), label_event("orphan"),
              prediction_event("late")])
    clock.t += 30
    _send(p, [label_event("late")])
    clock.t += 3600
    p.tick()
    assert _total(p, m.EXPIRED_PREDICTIONS, **{a.ML_SEGMENT: "tier=gold"}) == 1
    assert _total(p, m.ORPHANED_LABELS) == 1
    assert p.aggregates.value(f"{m.LABEL_DELAY.name}|count") == 1
    assert p.aggregates.value(f"{m.LABEL_DELAY.name}|sum") == pytest.approx(60.0)  # event times 1 min apart
    [(_, pending)] = p.aggregates.gauge_snapshot(m.PROCESSOR_STORE_PENDING.name)
    assert pending == 0
    p.close()


def test_cardinality_cap_overflow() -> None:
    p = _pipeline(metrics={"cardinality_limit": 3, "cardinality_admission": 1, "otlp": None})
    _send(p, [prediction_event(f"c{i}", task="multiclass", value=f"class{i}") for i in range(10)])
    classes = {dict(attrs)[a.ML_CLASS] for attrs, _ in p.aggregates.snapshot(m.PREDICTIONS.name)}
    assert classes == {"class0", "class1", "class2", a.OVERFLOW_VALUE}
    assert _total(p, m.PREDICTIONS, cls=a.OVERFLOW_VALUE) == 7
    assert _total(p, m.PROCESSOR_ATTRIBUTE_OVERFLOW, **{a.ML_ATTRIBUTE_KEY: a.ML_CLASS}) == 7


def test_task_mismatch_label_is_rejected() -> None:
    p = _pipeline()
    _send(p, [prediction_event("x", task="regression", value=1.0), label_event("x", value="cat")])
    assert _total(p, m.PROCESSOR_RECORDS_REJECTED, reason="task_mismatch") == 1
    assert _total(p, m.LABELED_PREDICTIONS) == 0


class RecordingStage(BaseStage):
    name = "recording"

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[str, PredictionBatch]] = []
        self.fail = fail

    def on_predictions(self, batch: PredictionBatch, sink: MetricSink) -> None:
        self.batches.append(("pred", batch))
        sink.add(m.ESTIMATED_PREDICTIONS, len(batch), {a.ML_MODEL_NAME: batch.model, a.ML_MODEL_VERSION: batch.version,
                                                        a.ML_ESTIMATOR: "cbpe"})
        if self.fail:
            raise RuntimeError("boom")

    def on_joined(self, batch: PredictionBatch, sink: MetricSink) -> None:
        self.batches.append(("joined", batch))

    def on_tick(self, now: float, sink: MetricSink) -> None:
        sink.set_gauge(m.PREDICTION_DRIFT, 0.25, {a.ML_MODEL_NAME: "m", a.ML_MODEL_VERSION: "",
                                                   a.ML_DRIFT_METHOD: "psi"})


def test_stage_sees_columnar_batches_and_persists_its_counters() -> None:
    stage = RecordingStage()
    p = _pipeline(stages=[stage])
    extra = {a.ML_PREDICTION_SCORES: [0.2, 0.8], a.ML_PREDICTION_CLASSES: ["0", "1"], "ml.feature.age": 42,
             "ml.feature.city": "Oslo", "ml.segment.region": "eu", a.ML_MODEL_VERSION: "v2"}
    _send(p, [prediction_event("a", **extra), prediction_event("b", **extra, **{"ml.feature.other": 1.5})])
    _send(p, [prediction_event("a", **extra), label_event("a", value="0")])  # duplicate prediction: not re-sent
    kinds = [k for k, _ in stage.batches]
    assert kinds == ["pred", "joined"]
    batch = stage.batches[0][1]
    assert (batch.model, batch.version, batch.task, batch.classes) == ("m", "v2", "binary", ("0", "1"))
    assert batch.ids == ["a", "b"] and batch.values == ["1", "1"] and batch.segments == ["region=eu"] * 2
    assert batch.features == {"age": [42, 42], "city": ["Oslo", "Oslo"], "other": [None, 1.5]}
    assert batch.score_matrix is not None and batch.score_matrix.tolist() == [[0.2, 0.8], [0.2, 0.8]]
    joined = stage.batches[1][1]
    assert joined.joined and joined.labels == ["0"] and joined.ids == ["a"]
    assert _total(p, m.ESTIMATED_PREDICTIONS) == 2
    p.tick()
    assert p.aggregates.gauge_snapshot(m.PREDICTION_DRIFT.name)[0][1] == 0.25


def test_failing_stage_loses_only_its_own_metrics() -> None:
    p = _pipeline(stages=[RecordingStage(fail=True)])
    _send(p, [prediction_event("a"), label_event("a")])
    assert _total(p, m.ESTIMATED_PREDICTIONS) == 0
    assert _total(p, m.LABELED_PREDICTIONS) == 1


def _binary_traffic(p: Processor, n: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    y = RNG.integers(0, 2, n)
    s = np.clip(np.where(y == 1, RNG.normal(0.6, 0.2, n), RNG.normal(0.4, 0.2, n)), 0, 1)
    _send(p, [prediction_event(f"r{start + i}", value=str(int(s[i] > 0.5)), **{
        a.ML_PREDICTION_SCORE: float(s[i]), a.ML_LABEL_VALUE: str(y[i])}) for i in range(n)])
    return y, s


def _auc(p: Processor) -> float:
    p.tick()
    [(_, auc)] = p.aggregates.gauge_snapshot(m.CLASSIFICATION_ROC_AUC.name)
    return auc


def test_auc_window_survives_restart(tmp_path: Path) -> None:
    from otel_ml.processor.auc_window import AUC_SAVE_INTERVAL_S

    metrics = {"auc_window": 300, "otlp": None}
    p = _pipeline(tmp_path, metrics=metrics)
    y1, s1 = _binary_traffic(p, 250, 0)
    y2, s2 = _binary_traffic(p, 150, 250)
    y, s = np.concatenate([y1, y2])[-300:], np.concatenate([s1, s2])[-300:]
    assert _auc(p) == pytest.approx(skm.roc_auc_score(y, s))
    p.close()  # clean stop: the window is saved
    q = _pipeline(tmp_path, metrics=metrics)
    assert _auc(q) == pytest.approx(skm.roc_auc_score(y, s))  # before any new traffic
    y3, s3 = _binary_traffic(q, 100, 400)
    q.clock.t += AUC_SAVE_INTERVAL_S  # type: ignore[attr-defined]
    q.tick()  # periodic save, then a crash (no close)
    y, s = np.concatenate([y, y3])[-300:], np.concatenate([s, s3])[-300:]
    q.store.close()
    r = _pipeline(tmp_path, metrics={"auc_window": 120, "otlp": None})  # a smaller window keeps the newest
    assert _auc(r) == pytest.approx(skm.roc_auc_score(y[-120:], s[-120:]))
    r.close()


def test_group_of_requests_counts_what_one_by_one_counts(tmp_path: Path) -> None:
    """One ``process`` call over several requests (the writer's group commit) joins and counts like one per call."""
    requests = [
        [label_event("early", value="0"), prediction_event("a"), prediction_event("x", task="regression", value=2.0)],
        [prediction_event("early", value="1"), label_event("a", value="1"), prediction_event("a"),  # duplicate
         label_event("x", value="cat"), prediction_event("pair", value="1", **{a.ML_LABEL_VALUE: "0"})],
        [label_event("a", value="0"), label_event("b", value="1"), prediction_event("b", value="0"),
         prediction_event("pair", value="1")],
    ]
    decoded = [decode_request(ev.request(r), 1_700_000_000.0) for r in requests]
    one, grouped = _pipeline(tmp_path / "one"), _pipeline(tmp_path / "grouped")
    one_results = [res for d in decoded for res in one.process([d])]
    assert grouped.process(decoded) == one_results
    assert [r.rejected for r in one_results] == [0, 1, 0]
    assert grouped.aggregates.all_totals() == one.aggregates.all_totals()
    assert _total(grouped, m.PROCESSOR_JOINS) == 5  # early, a, x (rejected: task mismatch), pair, b
    one.close()
    grouped.close()


def test_auc_window_takes_only_scored_joins() -> None:
    p = _pipeline()
    y = RNG.integers(0, 2, 200)
    s = RNG.random(200)
    scored = RNG.random(200) < 0.7
    _send(p, [prediction_event(f"s{i}", value=str(int(s[i] > 0.5)), **{a.ML_LABEL_VALUE: str(y[i]), **(
        {a.ML_PREDICTION_SCORE: float(s[i])} if scored[i] else {})}) for i in range(200)])
    assert _auc(p) == pytest.approx(skm.roc_auc_score(y[scored], s[scored]))
    assert _total(p, m.LABELED_PREDICTIONS) == 200
