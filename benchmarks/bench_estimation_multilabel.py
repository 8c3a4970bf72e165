"""Multilabel estimation benchmark: estimated vs realized exact match per chunk, with and without covariate shift.

NannyML has no multilabel estimator, so this runs in the project's own environment::

    .venv/bin/python benchmarks/bench_estimation_multilabel.py [--readme]

Data: scikit-learn's ``make_multilabel_classification`` (30000 samples, 10 features, 5 labels, about 2 labels per
sample; labels share latent topics, so a model's errors on different labels are correlated). A one-vs-rest model
(logistic regression, or histogram gradient boosting) is trained on 8000 samples; 6000 more are the reference
(evaluation set) and the last 16000 the analysis set, cut into 16 chunks of 1000: in random order, or sorted along
one feature (a strong covariate shift: each chunk holds one slice of that feature's range).

Rows: ``otel-ml`` (:class:`~otel_ml.estimation.MultilabelEstimator`), ``product`` (the same per-label calibrated
probabilities multiplied without the joint recalibration, i.e. assuming independent labels) and ``reference``
(the evaluation set's exact match as a constant). Figures: mean absolute error per chunk between the estimated and
realized exact match, coverage (share of chunks whose realized value lies inside otel-ml's interval) and the mean
interval width. Not a timed test; one run prints one table (``--readme`` writes it into benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from readme_section import write_section
from sklearn.datasets import make_multilabel_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from otel_ml.estimation import MultilabelEstimator

LABELS = [f"l{j}" for j in range(5)]
SCORES = [f"s_{c}" for c in LABELS]
FEATURES = [f"f{i}" for i in range(10)]
N_CHUNKS = 16
SCENARIOS = ("random", "sorted f0", "sorted f3")
FINDINGS = (
    "Findings: the labels' errors are correlated, so the plain product of calibrated per-label probabilities "
    "underestimates exact match by about 0.05 in every chunk; the joint recalibration (out-of-fold logistic on the "
    "product's logit) brings the error to 0.008-0.022. Without shift that is about the constant reference's error "
    "(chunk noise ~0.012; the logistic model keeps a -0.016 bias), under shift well below it (0.012 vs 0.076 for "
    "the gradient-boosted model along f3). The intervals cover every "
    "chunk but are conservative (mean width 0.14-0.28): the cross-validated margin is driven by the simulated "
    "shifted chunks.\n"
)


def frames(model: str) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, float]:
    """Reference frame, analysis frame, the analysis rows' realized exact match, the reference exact match."""
    X, Y = make_multilabel_classification(n_samples=30000, n_features=10, n_classes=5, n_labels=2, random_state=0)
    order = np.random.default_rng(0).permutation(len(X))
    train, rest = order[:8000], order[8000:]
    base = LogisticRegression(max_iter=300) if model == "logreg" else HistGradientBoostingClassifier(max_iter=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = OneVsRestClassifier(base).fit(X[train], Y[train])
    proba = clf.predict_proba(X[rest])
    decisions, truth = proba > 0.5, Y[rest].astype(bool)
    names = np.array(LABELS)
    frame = pd.DataFrame({name: X[rest, i] for i, name in enumerate(FEATURES)})
    frame["tags"] = ["|".join(names[t]) for t in truth]
    frame["pred"] = ["|".join(names[d]) for d in decisions]
    for j, col in enumerate(SCORES):
        frame[col] = proba[:, j]
    exact = np.all(decisions == truth, axis=1)
    return (frame.iloc[:6000].reset_index(drop=True), frame.iloc[6000:].reset_index(drop=True), exact[6000:],
            float(exact[:6000].mean()))


def run(model: str) -> list[list[str]]:
    ref, analysis, exact, baseline = frames(model)
    t = time.perf_counter()
    est = MultilabelEstimator().fit(ref, y_true="tags", y_pred="pred", scores=SCORES, classes=LABELS,
                                    features=FEATURES)
    fit_s = time.perf_counter() - t
    rows = []
    for scenario in SCENARIOS:
        order = (np.arange(len(analysis)) if scenario == "random"
                 else np.argsort(analysis[scenario.split()[1]].to_numpy(), kind="stable"))
        errs: dict[str, list[float]] = {"otel-ml": [], "product": [], "reference": []}
        inside, width, realized = [], [], []
        for rows_ in np.array_split(order, N_CHUNKS):
            chunk = analysis.iloc[rows_]
            real = float(exact[rows_].mean())
            e = est.estimate(chunk)
            _, q, d = est.predict_details(chunk)
            errs["otel-ml"].append(e.value - real)
            errs["product"].append(float(np.prod(np.where(d, q, 1 - q), axis=1).mean()) - real)
            errs["reference"].append(baseline - real)
            inside.append(e.contains(real))
            width.append(e.upper - e.lower)
            realized.append(real)
        rows.append([model, scenario, f"{min(realized):.3f}-{max(realized):.3f}",
                     *(f"{np.mean(np.abs(v)):.4f}" for v in errs.values()),
                     f"{np.mean(inside):.0%}", f"{np.mean(width):.3f}", f"{fit_s:.1f}"])
    return rows


def table(rows: list[list[str]]) -> str:
    head = ["model", "chunks", "realized exact match", "MAE otel-ml", "MAE product", "MAE reference",
            "coverage", "mean width", "fit s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows = [r for model in ("logreg", "hgb") for r in run(model)]
    text = table(rows)
    machine = (f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}; "
               f"run took {time.perf_counter() - t0:.0f} s")
    print(text)
    print(machine)
    if args.readme:
        body = ("<!-- section:estimation-multilabel -->\n### Multilabel: estimated exact match\n\n"
                "`.venv/bin/python benchmarks/bench_estimation_multilabel.py --readme` (see its docstring: "
                "one-vs-rest models on scikit-learn's multilabel generator, reference 6000 rows, 16 chunks of 1000; "
                "`product` = per-label probabilities multiplied as if labels were independent, `reference` = the "
                "evaluation set's exact match as a constant).\n\n"
                f"{text}\n\nMachine: {machine}.\n\n{FINDINGS}\n<!-- /section:estimation-multilabel -->")
        write_section("estimation-multilabel", body, after="estimation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
