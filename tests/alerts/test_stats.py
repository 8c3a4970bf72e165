"""The statistics behind the alert thresholds, checked against simulation and scipy (no processes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from otel_ml.alerting import stats
from otel_ml.alerting.thresholds import FAMILIES, SAFETY, family_z, load_thresholds, window_seconds
from otel_ml.drift.methods import psi


@pytest.mark.parametrize("window", ["1h", "1d", "7d"])
def test_z_for_false_alarms_inverts_the_crossing_rate(window: str) -> None:
    for budget in (0.01, 0.1, 1.0):
        z = stats.z_for_false_alarms(budget, window_seconds(window))
        if z > stats.Z_MIN:  # below, the budget is larger than the approximation can honour: clamped
            assert stats.scan_false_alarms(z, window_seconds(window)) == pytest.approx(budget, rel=1e-6)
    assert stats.z_for_false_alarms(0.1, 86400.0, tails=2) > stats.z_for_false_alarms(0.1, 86400.0)


@pytest.mark.parametrize("dof", [1, 2, 5, 9, 20, 40])
@pytest.mark.parametrize("z", [2.0, 3.0, 4.0])
def test_chi2_quantile_is_close_to_the_exact_one(dof: int, z: float) -> None:
    exact = sps.chi2.isf(stats.normal_sf(z), dof)
    assert stats.chi2_quantile(dof, z) == pytest.approx(exact, rel=0.1 if dof < 3 else 0.03)


def _episodes(z_stat: np.ndarray, z: float, step_min: int, gap_min: int = 360) -> int:
    above = np.flatnonzero(np.nan_to_num(z_stat, nan=-np.inf) > z)
    return 0 if above.size == 0 else 1 + int(np.sum(np.diff(above) * step_min > gap_min))


def test_a_sliding_day_window_of_poisson_traffic_stays_within_its_false_alarm_share() -> None:
    """The default z of a one-day realized-quality window, on 1000 predictions a day at accuracy 0.3, in 120
    simulated months with evaluations every 10 minutes: alert episodes (crossings less than 6h apart merged) per month
    stay at or below the test's share of the budget, which the safety factor halves."""
    rng = np.random.default_rng(12)
    z = family_z(load_thresholds(None), FAMILIES["quality"], "1d")
    share = 1.0 / len(FAMILIES) / len(FAMILIES["quality"].windows)
    p, per_min, window, step, months = 0.3, 1000 / 1440, 1440, 10, 120
    minutes = 30 * 1440
    episodes = 0
    for _ in range(months):
        n = rng.poisson(per_min, minutes + window)
        c = rng.binomial(n, p)
        cn, cc = np.concatenate([[0], np.cumsum(n)]), np.concatenate([[0], np.cumsum(c)])
        t = np.arange(window, minutes + window, step)
        nw, cw = cn[t] - cn[t - window], cc[t] - cc[t - window]
        with np.errstate(invalid="ignore", divide="ignore"):
            drop = (p - cw / nw) / np.sqrt(p * (1 - p) / nw)  # a drop of accuracy, no baseline error (N = inf)
        episodes += _episodes(drop, z, step)
    rate = episodes / months
    assert rate <= share * 1.25, (rate, share, z)
    assert rate >= share / SAFETY / 8, "the approximation is far too conservative: z could be lower"


def test_the_psi_threshold_is_exceeded_at_the_normal_tail_rate_when_nothing_drifted() -> None:
    rng = np.random.default_rng(3)
    bins, n, rows, z = 10, 1000, 5000, 2.5
    p = rng.dirichlet(np.full(bins, 5.0))
    reference = rng.multinomial(rows, p)
    windows = rng.multinomial(n, p, size=20000)
    threshold = stats.psi_threshold(0.0, z, bins, n, rows)
    exceed = np.mean([psi(reference, w) > threshold for w in windows])
    # the reference sample is one draw: its own error sits in every window, so allow a wide band around the tail
    assert stats.normal_sf(z) / 4 < exceed < stats.normal_sf(z) * 4, exceed


def test_thresholds_are_the_max_of_minimum_effect_and_significance() -> None:
    se = stats.standard_error(0.5, 400, 1600)
    assert se == pytest.approx(0.5 * math.sqrt(1 / 400 + 1 / 1600))
    assert stats.threshold(0.02, 3.0, se) == pytest.approx(3 * se)
    assert stats.threshold(0.2, 3.0, se) == 0.2
    assert stats.psi_threshold(0.1, 3.0, 10, 1e9) == 0.1
    assert stats.psi_threshold(0.1, 3.0, 10, 0) == math.inf
    assert stats.unseen_rate_bound(1000) == 0.003
