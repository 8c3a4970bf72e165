"""The demo's two scikit-learn models, trained in a second on synthetic data from :mod:`otel_ml.demo.scenario`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from otel_ml.demo import scenario

ROUTER = "support-router"
"""``ml.model.name`` of the multiclass router."""
TAGGER = "support-tagger"
"""``ml.model.name`` of the multilabel tagger."""
ROUTER_VERSION = "1"


@dataclass(slots=True)
class Models:
    """The fitted models."""

    router: Pipeline
    tagger: Pipeline

    def route(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted team and per-class probabilities (columns in ``router.classes_`` order)."""
        proba = self.router.predict_proba(x)
        classes = np.asarray(self.router.classes_)
        return classes[np.argmax(proba, axis=1)], proba

    def tag(self, x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Predicted tag matrix (bool) and per-tag probabilities at a decision threshold."""
        proba = self.tagger.predict_proba(x)
        return proba >= threshold, proba


def train(rng: np.random.Generator) -> Models:
    """Train the router and the tagger on a fresh training set."""
    data = scenario.training_set(rng)
    router = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    router.fit(data.features, data.team)
    tagger = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=500)))
    tagger.fit(data.features, data.tags.astype(int))
    return Models(router, tagger)


def tag_lists(matrix: np.ndarray) -> list[list[str]]:
    """Rows of a bool tag matrix as lists of tag names."""
    names = np.array(scenario.TAGS)
    return [list(names[row]) for row in matrix]
