"""Synthetic evaluation sets with known ground truth for the estimation, drift and reference tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

CLASSES = ["cat", "dog", "fox"]
SCORES = [f"p_{c}" for c in CLASSES]


def binary_frame(n: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """A calibrated binary model: y ~ Bernoulli(p), p = sigmoid(2x); ``shift`` moves x (covariate shift)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=shift, size=n)
    region = rng.choice(["eu", "us", "apac"], size=n)
    p = 1 / (1 + np.exp(-2 * x))
    y = (rng.random(n) < p).astype(int)
    return pd.DataFrame({"x": x, "region": region, "y": y, "yhat": (p > 0.5).astype(int), "p": p})


def multiclass_frame(n: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """A calibrated 3-class model on one numeric and one categorical feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=shift, size=n)
    region = rng.choice(["eu", "us", "apac"], size=n)
    logits = np.column_stack([1.5 * x, -1.5 * x, 0.5 * (region == "apac")])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in proba])
    frame = pd.DataFrame({"x": x, "region": region, "label": np.array(CLASSES)[y],
                          "pred": np.array(CLASSES)[proba.argmax(axis=1)]})
    for j, col in enumerate(SCORES):
        frame[col] = proba[:, j]
    return frame


def regression_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Heteroscedastic regression: the error's scale grows with |x|."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    kind = rng.choice(["a", "b"], size=n)
    y = 3 * x + rng.normal(size=n) * (0.5 + np.abs(x))
    return pd.DataFrame({"x": x, "kind": kind, "y": y, "yhat": 3 * x})


LABELS = ["a", "b", "c", "d"]
LABEL_SCORES = [f"s_{c}" for c in LABELS]


def multilabel_frame(n: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """A calibrated 4-label model: label j is true with probability sigmoid(w_j x + b_j), independently given x;
    the predicted set is the labels scored above 0.5 (``a|b`` strings). ``shift`` moves x (covariate shift)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=shift, size=n)
    region = rng.choice(["eu", "us", "apac"], size=n)
    logits = np.column_stack([2.0 * x, -2.0 * x + 0.5, 1.5 * (x - 1.0), 0.8 * x - 1.5 + (region == "apac")])
    proba = 1 / (1 + np.exp(-logits))
    truth = rng.random(proba.shape) < proba
    names = np.array(LABELS)
    frame = pd.DataFrame({"x": x, "region": region,
                          "tags": ["|".join(names[row]) for row in truth],
                          "predicted": ["|".join(names[row]) for row in proba > 0.5]})
    for j, col in enumerate(LABEL_SCORES):
        frame[col] = proba[:, j]
    return frame
