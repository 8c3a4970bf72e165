"""Evaluation sets, references and real production traffic for the alert integration tests.

Each model of the scenario has a small synthetic evaluation set; ``otel-ml reference fit`` (the real CLI) turns it
into the reference artifact the processor's estimation stage loads, so baselines, estimated quality, drift,
unseen classes and weak-segment traffic come from the real processor. The traffic is built from the same
generators:

* **healthy**: the evaluation set itself, replayed with its labels (same distribution: no drift, estimate at the
  baseline, realized quality at the baseline);
* **degraded**: feature ``x`` shifted by 3 (feature drift), most traffic in ``region=apac`` (the weak slice of the
  evaluation set), scores flattened (low estimated accuracy), a class the evaluation set never had (``wolf``), two
  labels per sample for the multilabel model (predictions per sample), and every ``wrong_every``-th prediction wrong.

Ranking references hold baselines and drift distributions only (no correctness estimator).
"""

from __future__ import annotations

import contextlib
import functools
import io
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from otel_ml.drift import Distribution
from otel_ml.reference import cli as reference_cli
from otel_ml.semconv import attributes as a
from tests.processor.conftest import label_event, prediction_event

Mode = Literal["healthy", "degraded"]
CLASSES = ["cat", "dog", "fox"]
SCORES = [f"p_{c}" for c in CLASSES]
TAGS = ["a", "b", "c"]
UNSEEN = "wolf"
"""A class the evaluation set never had (degraded traffic predicts it)."""
EVAL_ROWS = 400
WEAK_REGION = "apac"
"""The evaluation set's weak slice: the model is mostly wrong there (a share of 15% of the rows)."""
REFERENCE_TASKS = ("binary", "multiclass", "multilabel", "regression", "ranking")


# --- evaluation sets -------------------------------------------------------------------------------------------------
def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _regions(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(["eu", "us", WEAK_REGION], size=n, p=[0.425, 0.425, 0.15])


def classification_frame(task: str, n: int = EVAL_ROWS, seed: int = 0) -> pd.DataFrame:
    """Calibrated scores on feature ``x``; labels follow them except in the weak region (mostly wrong there)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    region = _regions(n, rng)
    if task == "binary":
        p = 1 / (1 + np.exp(-2 * x))
        y = (rng.random(n) < p).astype(int)
        pred = (p > 0.5).astype(int)
        weak = (region == WEAK_REGION) & (rng.random(n) < 0.8)
        y = np.where(weak, 1 - pred, y)
        return pd.DataFrame({"x": x, "region": region, "label": y.astype(str), "pred": pred.astype(str), "p": p})
    proba = _softmax(np.column_stack([1.5 * x, -1.5 * x, np.zeros(n)]))
    y = np.array([rng.choice(3, p=row) for row in proba])
    pred = proba.argmax(axis=1)
    weak = (region == WEAK_REGION) & (rng.random(n) < 0.8)
    y = np.where(weak, (pred + 1) % 3, y)
    frame = pd.DataFrame({"x": x, "region": region, "label": np.array(CLASSES)[y], "pred": np.array(CLASSES)[pred]})
    for j, col in enumerate(SCORES):
        frame[col] = proba[:, j]
    return frame


def regression_frame(n: int = EVAL_ROWS, seed: int = 0) -> pd.DataFrame:
    """Predictions off by 0.25 or 0.75 (MAE 0.5) on feature ``x`` in [0, 7)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 7, size=n).astype(float)
    region = _regions(n, rng)
    err = np.where(np.arange(n) % 2 == 0, 0.25, 0.75)
    return pd.DataFrame({"x": x, "region": region, "label": x, "pred": x + err})


def multilabel_frame(n: int = EVAL_ROWS, seed: int = 0) -> pd.DataFrame:
    """One tag per sample, right most of the time."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    region = _regions(n, rng)
    pred = np.where(x > 0, "a", "b")
    label = np.where(rng.random(n) < 0.9, pred, "c")
    return pd.DataFrame({"x": x, "region": region, "label": label, "pred": pred})


def ranking_frame(n: int = EVAL_ROWS, seed: int = 0) -> pd.DataFrame:
    """Four ranked items; the first is the relevant one 90% of the time, else the second."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    region = _regions(n, rng)
    label = np.where(rng.random(n) < 0.9, "i1", "i2")
    return pd.DataFrame({"x": x, "region": region, "label": label, "pred": ["i1|i2|i3|i4"] * n})


def evaluation_set(task: str) -> pd.DataFrame:
    """The evaluation set of a model of ``task`` (one of :data:`REFERENCE_TASKS`)."""
    if task == "ranking":
        return ranking_frame()
    if task == "regression":
        return regression_frame()
    if task == "multilabel":
        return multilabel_frame()
    return classification_frame(task)


def fit_references(models: list[tuple[str, str]], work: Path) -> tuple[Path, list[str]]:
    """Fit ``<work>/references/<model>/default`` with ``otel-ml reference fit`` for every model whose task has
    reference support; returns the directory and the CLI's output lines."""
    directory = work / "references"
    out: list[str] = []
    for model, task in models:
        if task not in REFERENCE_TASKS:
            continue
        data = work / f"evaluation-{model}.csv"
        evaluation_set(task).to_csv(data, index=False)
        argv = ["fit", "--model", model, "--data", str(data), "--task", task, "--target", "label",
                "--prediction", "pred", "--features", "x", "region", "--segments", "region",
                "--out", str(directory / model / "default")]
        if task == "multiclass":
            argv += ["--scores", *SCORES, "--classes", *CLASSES, "--method", "cbpe"]
        elif task == "binary":
            argv += ["--scores", "p", "--classes", "0", "1", "--method", "cbpe"]
        elif task == "multilabel":
            argv += ["--classes", *TAGS]
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            status = reference_cli.main(argv)
        if status != 0:
            raise RuntimeError(f"otel-ml reference fit {model}: status {status}\n{buffer.getvalue()}")
        out.append(buffer.getvalue().strip())
    return directory, out


# --- production traffic ----------------------------------------------------------------------------------------------
def _wrong(i: int, wrong_every: int) -> bool:
    return bool(wrong_every) and i % wrong_every == wrong_every - 1


def _degraded_row(task: str, i: int, rng: np.random.Generator) -> dict[str, Any]:
    """Features, segment and model output of the i-th degraded prediction (shifted, weak-region heavy)."""
    x = float(rng.normal(loc=3.0))
    # By pairs of rows (one right, one wrong when every second is wrong): each segment's accuracy is exact.
    region = (WEAK_REGION, WEAK_REGION, WEAK_REGION, "eu", "us")[(i // 2) % 5]
    row: dict[str, Any] = {"x": x, "region": region}
    if task == "multiclass":
        proba = _softmax(np.array([[0.15 * x, -0.15 * x, 0.0]]))[0]  # flattened: the model is unsure
        row["scores"] = [float(v) for v in proba]
        row["pred"] = UNSEEN if i % 10 == 1 else CLASSES[int(proba.argmax())]
    elif task == "binary":
        row["p"] = 0.55 if i % 2 else 0.45
        row["pred"] = "1" if row["p"] > 0.5 else "0"
    elif task == "regression":
        row["x"] = float(i % 7)
    return row


@functools.cache
def healthy_order(task: str) -> tuple[int, ...]:
    """Rows of the evaluation set in replay order: first a few rows that together hit every series the healthy
    replay produces (each reference bin of ``x``, each region, each (prediction, label) pair: greedy set cover), so
    the warm-up creates them all before the bulk of the traffic (``increase()`` counts from a series' first sample:
    a series born with a chunk's worth of counts would lose them, and skew every ratio and drift it enters); then
    the other rows."""
    frame = evaluation_set(task)
    bins = Distribution.fit("x", frame["x"].to_numpy(dtype=object)).bin_indices(frame["x"].to_numpy(dtype=object))
    keys = [{("x", int(b)), ("region", str(r)), ("pair", str(p), str(y)), ("pred", str(p))}
            for b, r, p, y in zip(bins, frame["region"], frame["pred"], frame["label"], strict=True)]
    missing = set().union(*keys)
    first: list[int] = []
    while missing:
        best = max(range(len(keys)), key=lambda i: (len(keys[i] & missing), -i))
        first.append(best)
        missing -= keys[best]
    chosen = set(first)
    return (*first, *(i for i in range(len(frame)) if i not in chosen))


def _healthy_row(task: str, i: int) -> dict[str, Any]:
    frame = evaluation_set(task)
    order = healthy_order(task)
    r = frame.iloc[order[i % len(order)]]
    row: dict[str, Any] = {"x": float(r["x"]), "region": str(r["region"]), "pred": r["pred"], "label": r["label"]}
    if task == "multiclass":
        row["scores"] = [float(r[c]) for c in SCORES]
    elif task == "binary":
        row["p"] = float(r["p"])
    return row


def events(model: str, task: str, n: int, wrong_every: int, mode: Mode, version: str) -> list[Any]:
    """``n`` predictions with their labels, alternating prediction, label (ranking: no reference, fixed items)."""
    rng = np.random.default_rng(zlib.crc32(f"{model}/{task}".encode()))
    out = []
    for i in range(n):
        pid = f"{model}-{i}"
        healthy = mode == "healthy" and task != "ranking"  # ranking traffic: fixed items below
        row = _healthy_row(task, i) if healthy else _degraded_row(task, i, rng)
        attrs: dict[str, Any] = {a.ML_MODEL_VERSION: version, a.ML_SEGMENT_PREFIX + "region": row["region"],
                                 a.ML_FEATURE_PREFIX + "x": row["x"], a.ML_FEATURE_PREFIX + "region": row["region"]}
        wrong = _wrong(i, wrong_every)
        if task in ("multiclass", "binary"):
            pred = str(row["pred"])
            if task == "multiclass":
                attrs[a.ML_PREDICTION_SCORES] = row["scores"]
                attrs[a.ML_PREDICTION_CLASSES] = CLASSES
            else:
                attrs[a.ML_PREDICTION_SCORE] = row["p"]
            if "label" in row:
                truth = str(row["label"])
            else:
                others = [c for c in (CLASSES if task == "multiclass" else ["0", "1"]) if c != pred]
                truth = others[0] if wrong or pred == UNSEEN else pred
            out.append(prediction_event(pid, model, task, pred, **attrs))
            out.append(label_event(pid, model, truth))
        elif task == "regression":
            truth_value = float(row["label"]) if "label" in row else float(i % 7)
            pred_value = float(row["pred"]) if "pred" in row else truth_value + (3.0 if wrong else 0.5)
            out.append(prediction_event(pid, model, task, pred_value, **attrs))
            out.append(label_event(pid, model, truth_value))
        elif task == "multilabel":
            pred_set = [str(row["pred"])] if "pred" in row else (["a", "b"] if i % 2 else ["a"])
            truth_set = [str(row["label"])] if "label" in row else ["a"]
            out.append(prediction_event(pid, model, task, pred_set, **attrs))
            out.append(label_event(pid, model, truth_set))
        else:  # ranking
            out.append(prediction_event(pid, model, task, ["i1", "i2", "i3", "i4"], **attrs))
            out.append(label_event(pid, model, ["i2"] if wrong else ["i1"]))
    return out


def unlabeled(model: str, task: str, start: int, n: int, version: str) -> list[Any]:
    """``n`` degraded predictions whose label never comes (they expire) and ``n`` labels of unknown predictions
    (orphaned), ids from ``start``."""
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        row = _degraded_row(task, i, rng)
        attrs: dict[str, Any] = {a.ML_MODEL_VERSION: version, a.ML_SEGMENT_PREFIX + "region": row["region"],
                                 a.ML_FEATURE_PREFIX + "x": row["x"], a.ML_FEATURE_PREFIX + "region": row["region"]}
        if task == "multiclass":
            attrs[a.ML_PREDICTION_SCORES] = row["scores"]
            attrs[a.ML_PREDICTION_CLASSES] = CLASSES
        value: Any = row.get("pred", "cat") if task in ("multiclass", "binary") else (
            float(i % 7) if task == "regression" else ["a"])
        out.append(prediction_event(f"{model}-unlabeled-{i}", model, task, value, **attrs))
        out.append(label_event(f"{model}-orphan-{i}", model, "cat" if task != "regression" else 1.0))
    return out
