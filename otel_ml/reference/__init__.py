"""Evaluation-set reference artifacts: what the model's labeled evaluation set says about it.

A reference holds the known classes, per-feature reference distributions, score calibration inside the fitted
correctness estimator, the evaluation set's own metrics (baselines for dashboards and alert thresholds), the
predictions-per-sample distribution (multilabel) and the weak segments. The processor loads one per model and
version from ``<reference.directory>/<model>/<version or "default">/`` to estimate correctness without labels and to
detect drift and novelty.

Usage
=====

Command line (see :mod:`otel_ml.reference.cli`)::

    otel-ml reference fit --model router --data eval.parquet --task multiclass --target label \\
        --prediction pred --scores p_a p_b --classes a b --features age --segments region \\
        --out references/router/default
    otel-ml reference report references/router/default

Python:

.. code-block:: python

    from otel_ml.reference import fit_reference, load

    art = fit_reference(df, model="router", task="multiclass", target="label", prediction="pred",
                        scores=["p_a", "p_b"], classes=["a", "b"], features=["age"], segments=["region"])
    art.save("references/router/default")
    art = load("references/router/default")       # verifies format version and checksums
    art.estimator.estimate(production_df)          # Estimate(metric="accuracy", value, lower, upper, ...)

The artifact format is described in :mod:`otel_ml.reference.artifact`.
"""

from otel_ml.reference.artifact import (
    FORMAT_VERSION,
    TRUSTED_TYPES,
    ArtifactError,
    ReferenceArtifact,
    WeakSegment,
    load,
    read_manifest,
)
from otel_ml.reference.fit import ReferenceFitError, fit_reference, parse_label_set, read_table

__all__ = [
    "FORMAT_VERSION",
    "TRUSTED_TYPES",
    "ArtifactError",
    "ReferenceArtifact",
    "ReferenceFitError",
    "WeakSegment",
    "fit_reference",
    "load",
    "parse_label_set",
    "read_manifest",
    "read_table",
]
