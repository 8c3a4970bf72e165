"""Estimation under novelty: near-perfect references and classes the reference never had, next to NannyML's CBPE.

Runs in the estimation benchmark's environment (NannyML needs pandas<3)::

    benchmarks/setup-estimation-env.sh                 # once: ~/.cache/otel-ml/bench-venv
    NML_DISABLE_USAGE_LOGGING=1 ~/.cache/otel-ml/bench-venv/bin/python benchmarks/bench_estimation_novelty.py [--readme]

Data sets, built from scikit-learn's bundled data (no download), each cut into 10 chunks of 300 rows:

* ``near_perfect``: breast cancer (binary, labels ``malignant``/``benign``, score = P(benign)); a random forest
  trained on 150 rows, the reference (evaluation set) is 250 other rows on which it makes a handful of errors.
  Production resamples the remaining 169 rows; a growing share of them (0 to 90 %) has every feature multiplied by
  a random factor in [0.3, 3], as a unit or pipeline bug would: inputs the model never saw.
* ``near_perfect_digits``: digits (10 classes), a logistic regression trained on 900 rows, reference 361 rows;
  production has a growing share (0 to 90 %) of images with strong pixel noise.
* ``withheld_class``: digits with class ``W`` withheld from the model's training set and from the reference (the
  model never saw it); production has a growing share (0 to 45 %) of ``W`` images, every one of them predicted as
  some other class, so realized accuracy falls with that share. Run for W = 9, 3, 8 and 1 (rows ``withheld_W``).
* ``unseen_prediction``: digits, the model knows all 10 classes but the reference lacks class 9; production has a
  growing share (0 to 45 %) of 9s, which the model predicts (mostly correctly) as a class the reference never had.

Figures per data set: the mean absolute error per chunk between estimated and realized accuracy, the share of
chunks whose realized accuracy lies inside the interval (coverage), and for otel-ml the share of chunks whose
realized accuracy is at or above the pessimistic bound (``Estimate.pessimistic`` when the installed otel-ml has
it). Rows: NannyML 0.13.1 CBPE, otel-ml ``auto`` (and the estimator it chose), otel-ml ``cbpe`` and ``atc``, and
the plain average confidence of the predicted class (no interval). ``--readme`` writes the table into
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
warnings.filterwarnings("ignore")

import nannyml as nml  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from readme_section import write_section  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import otel_ml  # noqa: E402
from otel_ml.estimation import create_estimator  # noqa: E402

FINDINGS = """Before and after (issues #16 and #12.3), `otel-ml auto`, same script and chunks; before = main at c621fa3:

| data set | accuracy MAE before -> after | coverage before -> after | NannyML CBPE MAE (coverage) |
|---|---|---|---|
| near_perfect | 0.1233 -> 0.0668 | 50% -> 100% | 0.1438 (10%) |
| near_perfect_digits | 0.1068 -> 0.0935 | 80% -> 100% | 0.0782 (30%) |
| withheld_9 | 0.1359 -> 0.1433 | 40% -> 90% | 0.1564 (20%) |
| withheld_3 | 0.1761 -> 0.1768 | 10% -> 30% | 0.1699 (10%) |
| withheld_8 | 0.1398 -> 0.1478 | 30% -> 100% | 0.1400 (20%) |
| withheld_1 | 0.1878 -> 0.1896 | 20% -> 80% | 0.1800 (10%) |
| unseen_prediction | 0.2004 -> 0.1764 | 30% -> 100% | 0.2070 (10%) |

- **Near-perfect reference** (7 errors in 250 rows): the rescaled rows are farther from the reference than any of
  its own rows (out of support, 1 of 300 in the clean chunk, 268 of 300 in the last); their correctness is the
  model's own confidence, not the reference's calibration, and they are counted and covered: MAE 0.123 -> 0.067
  (plain average confidence 0.056, NannyML 0.144), coverage 50 % -> 100 %. The band stays narrow on clean traffic
  (first chunk [0.893, 1.000] around a realized 0.973) and opens to the pessimistic bound as novel traffic grows.
  No calibrated value reaches 1.0 any more (the top block carries one pseudo-row at the reference accuracy).
- **Withheld class** (the model and the reference never saw the class): no label-free estimator sees that these
  predictions are all wrong (every estimator is off by 0.11-0.19); the point estimate stays the calibrated one
  (`withheld_9`, the designated benchmark: 0.143 vs NannyML's 0.156), and what changes is the interval: the
  estimated novel share of the traffic lowers the pessimistic bound, which covers the realized accuracy in 9 of 10
  chunks (NannyML 2 of 10). Across other withheld digits the MAE is within 0.01 of NannyML's (worse by
  0.007-0.010 on 3, 8 and 1; chunk noise about 0.02) and coverage is 30-100 %: a 3 looks too much like the digits
  the model knows for feature novelty to tell.
- **Unseen predicted class** (the model knows 9, the reference does not): those predictions have unknown
  correctness and the band reaches the optimistic bound (all right), covering every chunk (was 3 of 10).
- Price: intervals are wider where traffic is novel (mean width 0.55 on the near-perfect sets, 0.25-0.30 on the
  withheld ones, against 0.06 for NannyML, whose band does not cover); on the ten NannyML sets (table above)
  every coverage stays at or above its previous value and no MAE rises by more than 0.0001.
"""
N_CHUNKS = 10
CHUNK = 300
CONFIDENCE = "average confidence"


@dataclass
class Case:
    """Reference and analysis frames (analysis in chunk order, with targets) and column roles."""

    name: str
    task: str
    reference: pd.DataFrame
    analysis: pd.DataFrame
    features: list[str]
    scores: str | list[str]
    classes: list[str]
    note: str

    def chunks(self) -> list[pd.DataFrame]:
        return [self.analysis.iloc[i * CHUNK:(i + 1) * CHUNK] for i in range(N_CHUNKS)]


def _digit_frame(clf: LogisticRegression, X: np.ndarray, y: np.ndarray, names: list[str],
                 classes: list[str]) -> pd.DataFrame:
    proba = clf.predict_proba(X)
    frame = pd.DataFrame(X, columns=names)
    frame["y"] = y.astype(str)
    frame["yhat"] = clf.classes_[proba.argmax(axis=1)].astype(str)
    known = [str(c) for c in clf.classes_]
    for c in classes:
        frame[f"p_{c}"] = proba[:, known.index(c)] if c in known else 0.0
    return frame


def near_perfect() -> Case:
    data = load_breast_cancer()
    X, y = data.data, data.target  # 0 = malignant, 1 = benign
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(y))
    train, ref, prod = perm[:150], perm[150:400], perm[400:]
    clf = RandomForestClassifier(200, random_state=0).fit(X[train], y[train])
    names = [n.replace(" ", "_") for n in data.feature_names]

    def frame(Xs: np.ndarray, ys: np.ndarray) -> pd.DataFrame:
        p = clf.predict_proba(Xs)[:, 1]
        out = pd.DataFrame(Xs, columns=names)
        out["y"] = np.where(ys == 1, "benign", "malignant")
        out["yhat"] = np.where(p > 0.5, "benign", "malignant")
        out["p_benign"] = p
        return out

    parts = []
    for share in np.linspace(0, 0.9, N_CHUNKS):
        idx = rng.choice(prod, CHUNK)
        Xc = X[idx].copy()
        bad = rng.random(CHUNK) < share
        Xc[bad] *= rng.uniform(0.3, 3.0, size=(int(bad.sum()), X.shape[1]))
        parts.append(frame(Xc, y[idx]))
    return Case("near_perfect", "binary", frame(X[ref], y[ref]), pd.concat(parts, ignore_index=True), names,
                "p_benign", ["malignant", "benign"],
                "breast cancer, random forest; reference 250 rows; 0-90 % of production rows rescaled")


def near_perfect_digits() -> Case:
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    train, ref, prod = perm[:900], perm[900:1261], perm[1261:]
    clf = LogisticRegression(max_iter=3000, C=0.05).fit(X[train], y[train])
    names = [f"px{i}" for i in range(64)]
    classes = [str(c) for c in range(10)]
    parts = []
    for share in np.linspace(0, 0.9, N_CHUNKS):
        idx = rng.choice(prod, CHUNK)
        Xc = X[idx].copy()
        bad = rng.random(CHUNK) < share
        Xc[bad] = np.clip(Xc[bad] + rng.normal(scale=8.0, size=(int(bad.sum()), 64)), 0, 16)
        parts.append(_digit_frame(clf, Xc, y[idx], names, classes))
    return Case("near_perfect_digits", "multiclass", _digit_frame(clf, X[ref], y[ref], names, classes),
                pd.concat(parts, ignore_index=True), names, [f"p_{c}" for c in classes], classes,
                "digits, logistic regression; reference 361 rows; 0-90 % of production images noisy")


def withheld(w: int) -> Case:
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    known, novel = np.flatnonzero(y != w), np.flatnonzero(y == w)
    perm = rng.permutation(known)
    train, ref, prod = perm[:700], perm[700:1100], perm[1100:]
    clf = LogisticRegression(max_iter=3000, C=0.05).fit(X[train], y[train])
    names = [f"px{i}" for i in range(64)]
    classes = [str(c) for c in range(10) if c != w]
    parts = []
    for share in np.linspace(0, 0.45, N_CHUNKS):
        k = round(CHUNK * share)
        idx = np.concatenate([rng.choice(prod, CHUNK - k), rng.choice(novel, k)])
        parts.append(_digit_frame(clf, X[idx], y[idx], names, classes))
    return Case(f"withheld_{w}", "multiclass", _digit_frame(clf, X[ref], y[ref], names, classes),
                pd.concat(parts, ignore_index=True), names, [f"p_{c}" for c in classes], classes,
                f"digits without class {w} (model and reference); 0-45 % of production rows are {w}s")


def unseen_prediction() -> Case:
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    train, rest = perm[:800], perm[800:]
    clf = LogisticRegression(max_iter=3000, C=0.05).fit(X[train], y[train])
    names = [f"px{i}" for i in range(64)]
    all_classes = [str(c) for c in range(10)]
    ref = rest[:400][y[rest[:400]] != 9]
    prod, nines = rest[400:][y[rest[400:]] != 9], rest[400:][y[rest[400:]] == 9]
    parts = []
    for share in np.linspace(0, 0.45, N_CHUNKS):
        k = round(CHUNK * share)
        idx = np.concatenate([rng.choice(prod, CHUNK - k), rng.choice(nines, k)])
        parts.append(_digit_frame(clf, X[idx], y[idx], names, all_classes))
    reference = _digit_frame(clf, X[ref], y[ref], names, all_classes)
    classes = all_classes[:9]
    # The evaluation set never had a 9 (and its rows never predict one): the reference knows classes 0-8 only; the
    # scores of class 9 are not among its score columns.
    reference = reference[reference.yhat != "9"].reset_index(drop=True)
    return Case("unseen_prediction", "multiclass", reference, pd.concat(parts, ignore_index=True), names,
                [f"p_{c}" for c in classes], classes,
                "digits, model knows 0-9, reference lacks 9; 0-45 % of production rows are 9s")


CASES: dict[str, Callable[[], Case]] = {
    "near_perfect": near_perfect,
    "near_perfect_digits": near_perfect_digits,
    **{f"withheld_{w}": (lambda w=w: withheld(w)) for w in (9, 3, 8, 1)},
    "unseen_prediction": unseen_prediction,
}


def realized(case: Case) -> np.ndarray:
    return np.array([float((c.y.astype(str) == c.yhat.astype(str)).mean()) for c in case.chunks()])


def run_nannyml(case: Case) -> list[tuple[float, float, float]]:
    if case.task == "binary":
        proba: str | dict[str, str] = str(case.scores)
        problem = "classification_binary"
        ref = case.reference.assign(y=(case.reference.y == case.classes[-1]).astype(int),
                                    yhat=(case.reference.yhat == case.classes[-1]).astype(int))
        ana = case.analysis.assign(yhat=(case.analysis.yhat == case.classes[-1]).astype(int))
    else:
        proba = dict(zip(case.classes, case.scores, strict=True))
        problem = "classification_multiclass"
        ref, ana = case.reference, case.analysis
    est = nml.CBPE(problem_type=problem, y_pred_proba=proba, y_pred="yhat", y_true="y", metrics=["accuracy"],
                   chunk_size=CHUNK)
    est.fit(ref)
    df = est.estimate(ana.drop(columns=["y"])).filter(period="analysis").to_df()
    if len(df) != N_CHUNKS:
        raise RuntimeError(f"{case.name}: NannyML made {len(df)} chunks")
    lo = df[("accuracy", "lower_confidence_boundary")].to_numpy(float)
    hi = df[("accuracy", "upper_confidence_boundary")].to_numpy(float)
    return [(v, a if np.isfinite(a) else -np.inf, b if np.isfinite(b) else np.inf)
            for v, a, b in zip(df[("accuracy", "value")].to_numpy(float), lo, hi, strict=True)]


def run_otel_ml(case: Case, method: str) -> tuple[list[tuple[float, float, float, float]], str]:
    est = create_estimator(case.task, method)
    est.fit(case.reference, y_true="y", y_pred="yhat", scores=case.scores, features=case.features,
            classes=case.classes, task=case.task)
    out = []
    for chunk in case.chunks():
        e = est.estimate(chunk.drop(columns=["y"]))
        pessimistic = getattr(e, "pessimistic", None)
        out.append((e.value, e.lower, e.upper, float("nan") if pessimistic is None else float(pessimistic)))
    return out, est.estimator_key


def confidence(case: Case) -> list[tuple[float, float, float]]:
    out = []
    for chunk in case.chunks():
        if isinstance(case.scores, str):
            p = chunk[case.scores].to_numpy(float)
            conf = np.where(chunk.yhat == case.classes[-1], p, 1 - p)
        else:
            conf = chunk[case.scores].to_numpy(float).max(axis=1)
        out.append((float(conf.mean()), float("nan"), float("nan")))
    return out


@dataclass
class Row:
    case: str
    label: str
    mae: float
    coverage: float
    width: float
    pessimistic: float


def evaluate(case: Case, methods: Sequence[str]) -> list[Row]:
    real = realized(case)
    rows = []
    results: dict[str, list[tuple[float, ...]]] = {"NannyML CBPE": list(run_nannyml(case))}
    chosen = ""
    for method in methods:
        res, key = run_otel_ml(case, method)
        label = f"otel-ml {method}"
        if method == "auto":
            chosen = key
            label = f"otel-ml auto ({key})"
        results[label] = list(res)
    results[CONFIDENCE] = list(confidence(case))
    for label, res in results.items():
        v = np.array([r[0] for r in res])
        lo = np.array([r[1] for r in res])
        hi = np.array([r[2] for r in res])
        pess = np.array([r[3] if len(r) > 3 else np.nan for r in res])
        finite = np.isfinite(lo).any()
        cover = float(np.mean((lo <= real) & (real <= hi))) if finite else float("nan")
        width = float(np.mean(np.minimum(hi, 1.0) - np.maximum(lo, 0.0))) if finite else float("nan")
        below = float(np.mean(pess <= real)) if np.isfinite(pess).all() else float("nan")
        rows.append(Row(case.name, label, float(np.mean(np.abs(v - real))), cover, width, below))
    print(f"  {case.name}: realized {np.round(real, 3).tolist()} (auto chose {chosen})", flush=True)
    for label, res in results.items():
        print(f"    {label:28s} " + " ".join(f"{r[0]:.3f}" for r in res), flush=True)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| data set | estimator | accuracy MAE | coverage | mean interval width | "
             "realized >= pessimistic bound |", "|---|---|---|---|---|---|"]
    for r in rows:
        cov = "–" if not np.isfinite(r.coverage) else f"{r.coverage:.0%}"
        width = "–" if not np.isfinite(r.width) else f"{r.width:.3f}"
        pess = "–" if not np.isfinite(r.pessimistic) else f"{r.pessimistic:.0%}"
        lines.append(f"| {r.case} | {r.label} | {r.mae:.4f} | {cov} | {width} | {pess} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help=f"data sets ({', '.join(CASES)})")
    parser.add_argument("--methods", nargs="*", default=["auto", "cbpe", "atc"])
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows: list[Row] = []
    cases = []
    for name, build in CASES.items():
        if args.only and name not in args.only:
            continue
        case = build()
        cases.append(case)
        rows.extend(evaluate(case, args.methods))
    text = table(rows)
    print(text)
    machine = (f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, otel-ml "
               f"{otel_ml.__version__}, NannyML {nml.__version__}, pandas {pd.__version__}; run took "
               f"{time.perf_counter() - t0:.0f} s")
    print(machine)
    if args.readme:
        notes = "\n".join(f"- `{c.name}`: {c.note}; reference {len(c.reference)} rows with "
                          f"{int((c.reference.y != c.reference.yhat).sum())} errors" for c in cases)
        body = ("<!-- section:estimation-novelty -->\n### Near-perfect references and novel inputs\n\n"
                "`NML_DISABLE_USAGE_LOGGING=1 ~/.cache/otel-ml/bench-venv/bin/python "
                "benchmarks/bench_estimation_novelty.py --readme` (see its docstring for the data sets).\n\n"
                f"{text}\n\nMachine: {machine}.\n\n{FINDINGS}\nData sets:\n{notes}\n"
                "<!-- /section:estimation-novelty -->")
        write_section("estimation-novelty", body, after="estimation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
