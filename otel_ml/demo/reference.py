"""Fitting the demo models' references from their evaluation set, with ``otel-ml reference fit``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from otel_ml.demo import run
from otel_ml.demo.models import Models


def fit_all(models: Models, rng: np.random.Generator, work: Path, reference_dir: Path) -> str:
    """Score the evaluation set, write it, fit the references into ``reference_dir``; returns a short description."""
    run.write_evaluation_set(work / "evaluation.parquet", models, rng)
    if importlib.util.find_spec("otel_ml.reference") is None:
        raise RuntimeError("otel_ml.reference (reference fitting) is not part of this installation yet")
    raise RuntimeError("reference fitting is not wired into the demo yet")
