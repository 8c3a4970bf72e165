"""Drift and novelty against an evaluation-set reference.

Usage
=====

.. code-block:: python

    from otel_ml.drift import Distribution, WindowedDrift, UnseenClassCounter

    ref = Distribution.fit("age", reference_df["age"])          # quantile bins (numeric) or top values
    drift = WindowedDrift(ref, window=5000)
    per_bin = drift.observe(batch["age"])                       # counts per bin: additive, export as counters
    drift.scores()                                              # {"psi": ..., "jensen_shannon": ..., "ks": ...}

    unseen = UnseenClassCounter(reference_classes, cap=50)
    unseen.observe(predicted_classes)                           # {"Mystery": 3}

Statistics (:mod:`otel_ml.drift.methods`): ``psi`` and ``jensen_shannon`` on bins for numeric and categorical
variables, ``ks`` (binned, or raw with :func:`otel_ml.drift.methods.ks`). Distributions serialise to JSON and live in
the reference artifact (:mod:`otel_ml.reference`).
"""

from otel_ml.drift.detectors import UnseenClassCounter, WindowedDrift
from otel_ml.drift.distribution import CATEGORICAL, MISSING_BIN, NUMERIC, OTHER_BIN, Distribution
from otel_ml.drift.methods import BINNED_METHODS, JENSEN_SHANNON, KS, PSI, drift_score

__all__ = [
    "BINNED_METHODS",
    "CATEGORICAL",
    "JENSEN_SHANNON",
    "KS",
    "MISSING_BIN",
    "NUMERIC",
    "OTHER_BIN",
    "PSI",
    "Distribution",
    "UnseenClassCounter",
    "WindowedDrift",
    "drift_score",
]
