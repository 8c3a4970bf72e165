"""Fitting the demo models' references from their evaluation set, with ``otel-ml reference fit``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from otel_ml.demo import run
from otel_ml.demo.models import Models


def available() -> bool:
    """Whether this installation has reference fitting and the processor's estimation/drift stage."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("otel_ml.reference", "otel_ml.processor.stages.estimation"))


def fit_all(models: Models, rng: np.random.Generator, work: Path, reference_dir: Path) -> str | None:
    """Score the evaluation set, write it, fit the references into ``reference_dir``.

    Returns a short description, or ``None`` when this installation cannot fit references (the demo then runs
    with realized quality only).
    """
    run.write_evaluation_set(work / "evaluation.parquet", models, rng)
    if not available():
        return None
    raise RuntimeError("reference fitting is not wired into the demo yet")
