"""Fitting the demo models' references from their evaluation set, with ``otel-ml reference fit``.

The evaluation set predates the new product: it has no ``mystery`` tickets, and the router's reference knows the
four teams only (their score columns), so ``mystery`` predictions in production are an unseen class. The tagger's
reference holds its tags, the distribution of tags per ticket at threshold 0.5 and a multilabel correctness estimator
(per-tag calibrated scores; P(exact match) per ticket), so the tagger gets estimated exact-match accuracy too.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from otel_ml.demo import run, scenario
from otel_ml.demo.models import ROUTER, TAGGER, Models
from otel_ml.reference import cli as reference_cli
from otel_ml.semconv.attributes import Task

DEFAULT_VERSION_DIR = "default"
"""References apply to every version of a model (``<dir>/<model>/default``)."""


def _fit(argv: list[str], log: Path) -> None:
    with open(log, "a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        print("$ otel-ml reference " + " ".join(argv), flush=True)
        status = reference_cli.main(argv)
    if status != 0:
        raise RuntimeError(f"otel-ml reference fit failed with status {status}; see {log}")


def fit_all(models: Models, rng: np.random.Generator, work: Path, reference_dir: Path) -> str:
    """Score the evaluation set, write it, fit both references into ``reference_dir``; returns a description."""
    data = work / "evaluation.parquet"
    run.write_evaluation_set(data, models, rng)
    log = work / "reference-fit.log"
    features = list(scenario.FEATURES)
    # The router is confidently wrong in region=apac: calibrated confidence (what `--method auto` picks on this
    # evaluation set) cannot see that, a correctness model that also reads `region` can. So: `--method learned`.
    _fit(["fit", "--model", ROUTER, "--data", str(data), "--task", Task.MULTICLASS, "--target", "team",
          "--prediction", "team_pred", "--classes", *scenario.CLASSES,
          "--scores", *(f"p_{c}" for c in scenario.CLASSES), "--features", *features, "region",
          "--segments", "region", "--method", "learned",
          "--out", str(reference_dir / ROUTER / DEFAULT_VERSION_DIR)], log)
    _fit(["fit", "--model", TAGGER, "--data", str(data), "--task", Task.MULTILABEL, "--target", "tags",
          "--prediction", "tags_pred", "--classes", *scenario.TAGS, "--features", *features, "--segments", "region",
          "--out", str(reference_dir / TAGGER / DEFAULT_VERSION_DIR)], log)
    return f"{ROUTER} and {TAGGER} (log: {log})"
