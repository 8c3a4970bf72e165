"""Drift detectors against known distributions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from otel_ml.drift import Distribution, UnseenClassCounter, WindowedDrift
from otel_ml.drift.methods import binned_ks, drift_score, jensen_shannon, ks, psi
from otel_ml.drift.relabel import RelabelSink


def test_psi_and_js_known_values():
    same = np.array([100.0, 100.0])
    assert psi(same, same) == pytest.approx(0.0)
    assert jensen_shannon(same, same) == pytest.approx(0.0)
    # Disjoint supports: JS distance is exactly 1 (base 2).
    assert jensen_shannon(np.array([10.0, 0.0]), np.array([0.0, 10.0])) == pytest.approx(1.0)
    # PSI of 50/50 vs 80/20 with large counts: sum (q-p) ln(q/p).
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi(np.array([5e5, 5e5]), np.array([8e5, 2e5])) == pytest.approx(expected, rel=1e-3)
    assert np.isnan(psi(np.zeros(2), same))
    with pytest.raises(ValueError, match="known"):
        drift_score("nope", same, same)


def test_ks_matches_scipy():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(0.3, size=700)
    assert ks(a, b) == pytest.approx(ks_2samp(a, b).statistic)
    assert binned_ks(np.array([1.0, 1.0]), np.array([2.0, 0.0])) == pytest.approx(0.5)


def test_numeric_bins_are_reference_quantiles_with_open_ends():
    ref = Distribution.fit("x", np.arange(1000.0))
    assert len(ref.labels) == 11 and ref.labels[-1] == "missing"
    assert ref.counts[:10] == [100.0] * 10
    counts = ref.count([-5.0, 1e9, None, float("nan"), 500.0])
    assert counts[0] == 1 and counts[9] == 1 and counts[10] == 2 and counts.sum() == 5
    assert ref.outside([-1.0, 10.0, 2000.0]).tolist() == [True, False, True]


def test_categorical_bins_and_unknown_values():
    ref = Distribution.fit("c", ["a", "b", "a", None, 1, 1.0])
    assert ref.kind == "categorical"
    assert ref.labels == ["1", "a", "b", "_other", "missing"]
    assert ref.count(["a", "zzz", None, 1]).tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert ref.outside(["a", "zzz", None]).tolist() == [False, True, False]
    again = Distribution.from_json(json.loads(json.dumps(ref.to_json())))
    assert (again.labels, again.counts, again.categories) == (ref.labels, ref.counts, ref.categories)


def test_same_distribution_no_drift_shifted_distribution_drifts():
    rng = np.random.default_rng(1)
    ref = Distribution.fit("x", rng.normal(size=5000))
    stable, moved = WindowedDrift(ref, window=2000), WindowedDrift(ref, window=2000)
    for _ in range(10):
        stable.observe(rng.normal(size=300))
        moved.observe(rng.normal(loc=1.0, size=300))
    s, d = stable.scores(), moved.scores()
    assert s["psi"] < 0.05 and s["jensen_shannon"] < 0.1 and s["ks"] < 0.06
    assert d["psi"] > 0.5 and d["jensen_shannon"] > 0.3 and d["ks"] > 0.3
    assert 2000 <= moved.observations < 2000 + 300


def test_window_needs_enough_observations():
    ref = Distribution.fit("x", np.arange(100.0))
    w = WindowedDrift(ref)
    w.observe(np.arange(10.0))
    assert all(np.isnan(v) for v in w.scores().values())


def test_observe_returns_additive_counts():
    ref = Distribution.fit("x", np.arange(100.0))
    w = WindowedDrift(ref)
    a, b = w.observe(np.arange(0.0, 50.0)), w.observe(np.arange(50.0, 100.0))
    np.testing.assert_array_equal(a + b, ref.counts)


def test_unseen_classes_capped():
    c = UnseenClassCounter(["cat", "dog"], cap=2)
    assert c.observe(["cat", "Mystery"]) == {"Mystery": 1}
    assert c.observe(["X", "Y", "Mystery", "dog"]) == {"X": 1, "_other": 1, "Mystery": 1}


def test_relabel_sink_rotates_and_is_bounded(tmp_path):
    path = tmp_path / "relabel.jsonl"
    sink = RelabelSink(path, max_samples=3)
    rows = [{"timestamp": 1.7e9, "model": "m", "version": "", "prediction_id": str(i), "reason": "drift",
             "detail": "x", "estimated_correctness": float("nan"), "prediction": "a", "segment": "",
             "features": {"x": np.float64(1.5)}} for i in range(7)]
    assert sink.write(rows) == 7
    current = [json.loads(x) for x in path.read_text().splitlines()]
    older = [json.loads(x) for x in (tmp_path / "relabel.jsonl.1").read_text().splitlines()]
    assert [r["prediction_id"] for r in current] == ["6"]
    assert [r["prediction_id"] for r in older] == ["3", "4", "5"]
    assert current[0]["schema"] == 1 and current[0]["estimated_correctness"] is None
    assert current[0]["time"].startswith("2023-11-14") and current[0]["features"] == {"x": 1.5}
    assert RelabelSink(path, max_samples=3)._lines == 1  # a restart continues the count
