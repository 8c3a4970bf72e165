"""The statistics behind otel-ml's alert thresholds: how big a change must be to be *significant* in a window.

Every model-quality alert compares a windowed quantity with its evaluation-set baseline and fires when the change
is both **significant** (more than ``z`` standard errors) and **larger than a minimum effect**::

    effect > max(min_effect, z * se(n))

where ``n`` is what the window holds (labeled predictions, predictions, observations) and ``se(n)`` the standard
error of the change under "nothing changed": ``sd * sqrt(1/n + 1/N)`` for a mean whose per-row standard deviation
on the evaluation set is ``sd`` (``N`` evaluation rows: the baseline is uncertain too). At low volume the
significance term governs (few false alarms, at the price of sensitivity); at high volume the minimum effect does
(nobody is paged for a 0.1-point move that is merely significant).

Choosing ``z``: a rule re-evaluated continuously over a sliding window of length ``W`` looks at about ``T / W``
independent windows in a period ``T``, and more (the windows overlap). For the standardized mean of a sliding window
(the increment of a random walk) the expected number of up-crossings of level ``z`` in ``T`` is, by Pickands'
approximation for processes with covariance ``1 - |t|/W``, ``(T / W) * z * phi(z)``. :func:`z_for_false_alarms`
solves that for a budget of false alarms per month; the budget of a model is split evenly across the statistical
alert families and their windows (Bonferroni), so the default of one false alarm per model and month gives
``z`` of about 3.85 for a one-day window and 4.64 for a one-hour window (``SAFETY`` included).

Drift (population stability index over reference bins): with ``n`` observations in the window and ``N`` in the
reference, ``PSI * n N / (n + N)`` is approximately chi-square with ``B - 1`` degrees of freedom when nothing
drifted, so the significance threshold is ``chi2_{B-1}(z) * (1/n + 1/N)``; :func:`chi2_quantile` is the
Wilson-Hilferty approximation, which PromQL can compute (``count`` of bins gives ``B``).

Every function here is plain arithmetic, mirrored in PromQL by :mod:`otel_ml.alerting.rules` and used by
``otel-ml demo`` to apply the same tests to its own snapshots.
"""

from __future__ import annotations

import math

MONTH_S = 30 * 86400.0
"""The period of the false-alarm budget."""
Z_MIN = 2.0
"""Smallest ``z`` ever derived (the scan approximation is for rare crossings)."""
Z_MAX = 8.0


def normal_pdf(z: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def normal_sf(z: float) -> float:
    """Standard normal upper tail ``P(Z > z)``."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def scan_false_alarms(z: float, window_s: float, period_s: float = MONTH_S) -> float:
    """Expected up-crossings of ``z`` by a sliding-window standardized mean (window ``window_s``) in ``period_s``.

    >>> round(scan_false_alarms(3.0, 86400.0), 3)
    0.399
    """
    return (period_s / window_s) * z * normal_pdf(z)


def z_for_false_alarms(false_alarms: float, window_s: float, *, period_s: float = MONTH_S, tails: int = 1) -> float:
    """The ``z`` at which a sliding window of ``window_s`` crosses (either tail when ``tails`` is 2) about
    ``false_alarms`` times per ``period_s`` when nothing changed; clamped to [:data:`Z_MIN`, :data:`Z_MAX`].

    >>> round(z_for_false_alarms(1 / 18, 86400.0), 2)
    3.65
    """
    if false_alarms <= 0:
        return Z_MAX
    target = false_alarms / tails
    lo, hi = Z_MIN, Z_MAX
    if scan_false_alarms(lo, window_s, period_s) <= target:
        return lo
    for _ in range(80):  # z * phi(z) decreases for z > 1: bisection
        mid = (lo + hi) / 2
        if scan_false_alarms(mid, window_s, period_s) > target:
            lo = mid
        else:
            hi = mid
    return hi


def corrected_z(z: float, tests: int) -> float:
    """``z`` for one of ``tests`` tests sharing one test's false-alarm share: ``sqrt(z^2 + 2 ln tests)`` (dividing
    the normal tail ``phi(z) ~ exp(-z^2 / 2)`` by ``tests``, up to slowly varying factors).

    >>> round(corrected_z(3.85, 9), 2)
    4.38
    """
    return math.sqrt(z * z + 2.0 * math.log(max(tests, 1)))


def chi2_quantile(dof: float, z: float) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile with ``dof`` degrees of freedom at normal ``z``.

    >>> round(chi2_quantile(9, 1.6449), 2)  # exact 16.92
    16.9
    """
    if dof <= 0:
        return 0.0
    c = 2.0 / (9.0 * dof)
    return dof * max(1.0 - c + z * math.sqrt(c), 0.0) ** 3


def standard_error(sd: float, n: float, reference_rows: float | None = None) -> float:
    """Standard error of (window mean - baseline) for a per-row ``sd``: ``sd * sqrt(1/n + 1/N)``."""
    if n <= 0:
        return math.inf
    return sd * math.sqrt(1.0 / n + (1.0 / reference_rows if reference_rows else 0.0))


def threshold(min_effect: float, z: float, se: float) -> float:
    """``max(min_effect, z * se)``: how large a change must be to fire."""
    return max(min_effect, z * se)


def psi_threshold(min_psi: float, z: float, bins: int, n: float, reference_rows: float | None = None) -> float:
    """PSI above which drift is both significant at ``z`` and at least ``min_psi`` (``bins`` reference bins)."""
    if n <= 0:
        return math.inf
    scale = 1.0 / n + (1.0 / reference_rows if reference_rows else 0.0)
    return max(min_psi, chi2_quantile(bins - 1, z) * scale)


def unseen_rate_bound(reference_rows: float) -> float:
    """Largest share a class can plausibly have and still be absent from ``reference_rows`` evaluation rows
    (the "rule of three": the 95 % upper bound of a rate never observed in N trials is about 3 / N)."""
    return 3.0 / reference_rows if reference_rows > 0 else 0.0
