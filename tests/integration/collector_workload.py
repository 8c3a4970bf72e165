"""A binary classifier's predictions and labels as otel-ml events, and the truth computed with scikit-learn.

The integration tests send these events through the real collector and processor, then compare what Prometheus
says with :class:`Truth` (exact counts, and ratios computed the same way in float64).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from opentelemetry.proto.logs.v1 import logs_pb2
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

from otel_ml.semconv import attributes as a
from otel_ml.semconv import events, label_name, prom_name
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Outcome, Task
from tests.integration.collector_stack import Stack, log_record

CLASSES = ("0", "1")
SETTLE_S = 2.5


@dataclass(frozen=True)
class Truth:
    """What the processor's metrics must say after every prediction and label was processed."""

    predictions: int
    labeled: int
    correct: int
    accuracy: float
    roc_auc: float
    outcomes: dict[tuple[str, str], int]  # (class, outcome) -> count


@dataclass(frozen=True)
class Workload:
    """Predictions of one model on a held-out set and their labels."""

    model: str
    ids: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    score: np.ndarray

    def prediction(self, i: int) -> logs_pb2.LogRecord:
        return log_record({
            a.ML_MODEL_NAME: self.model, a.ML_MODEL_VERSION: "v1", a.ML_TASK: Task.BINARY,
            a.ML_PREDICTION_ID: self.ids[i], a.ML_PREDICTION_VALUE: CLASSES[int(self.y_pred[i])],
            a.ML_PREDICTION_SCORE: float(self.score[i]), a.ML_PREDICTION_CLASSES: list(CLASSES),
        }, event_name=events.ML_PREDICTION_EVENT)

    def label(self, i: int) -> logs_pb2.LogRecord:
        return log_record({a.ML_MODEL_NAME: self.model, a.ML_PREDICTION_ID: self.ids[i],
                           a.ML_LABEL_VALUE: CLASSES[int(self.y_true[i])]}, event_name=events.ML_LABEL_EVENT)

    def predictions(self, idx: range | None = None) -> list[logs_pb2.LogRecord]:
        return [self.prediction(i) for i in (idx if idx is not None else range(len(self.ids)))]

    def labels(self, idx: range | None = None) -> list[logs_pb2.LogRecord]:
        return [self.label(i) for i in (idx if idx is not None else range(len(self.ids)))]

    def truth(self) -> Truth:
        """The truth, from scikit-learn on the same arrays the events were built from."""
        cm = confusion_matrix(self.y_true, self.y_pred, labels=[0, 1])
        outcomes: dict[tuple[str, str], int] = {}
        for c, name in enumerate(CLASSES):
            tp = int(cm[c, c])
            outcomes[(name, Outcome.TP)] = tp
            outcomes[(name, Outcome.FP)] = int(cm[:, c].sum()) - tp
            outcomes[(name, Outcome.FN)] = int(cm[c, :].sum()) - tp
        n = len(self.ids)
        return Truth(predictions=n, labeled=n, correct=int(accuracy_score(self.y_true, self.y_pred, normalize=False)),
                     accuracy=float(accuracy_score(self.y_true, self.y_pred)),
                     roc_auc=float(roc_auc_score(self.y_true, self.score)), outcomes=outcomes)


def make_workload(n: int, model: str = "fraud", seed: int = 7) -> Workload:
    """``n`` predictions of a logistic regression trained on a synthetic binary problem."""
    x, y = make_classification(n_samples=2 * n, n_features=6, n_informative=4, flip_y=0.1, random_state=seed)
    clf = LogisticRegression(max_iter=500).fit(x[:n], y[:n])
    x_test, y_test = x[n:], y[n:]
    return Workload(model=model, ids=[f"{model}-{seed}-{i:06d}" for i in range(n)], y_true=y_test,
                    y_pred=clf.predict(x_test), score=clf.predict_proba(x_test)[:, 1])


def other_logs(n: int) -> list[logs_pb2.LogRecord]:
    """Ordinary application logs and one non-otel-ml event: none of them may reach the processor."""
    out = [log_record({"http.route": "/predict", "http.response.status_code": 200}, body=f"request {i} served")
           for i in range(n)]
    out.append(log_record({a.ML_MODEL_NAME: "fraud"}, event_name="app.deploy", body="deployed model fraud v1"))
    return out


MODEL = label_name(a.ML_MODEL_NAME)


def model_sum(metric: m.MetricSpec, model: str, by: str = "") -> str:
    """``sum(<metric>{ml_model_name="<model>"})``, optionally ``by`` some labels."""
    grouping = f" by ({by})" if by else ""
    return f'sum{grouping}({prom_name(metric)}{{{MODEL}="{model}"}})'


def assert_matches_truth(stack: Stack, w: Workload, truth: Truth, timeout: float = 90.0) -> None:
    """Wait for every label to be joined, then compare every realized-quality series with the truth."""
    stack.wait_value(model_sum(m.LABELED_PREDICTIONS, w.model), truth.labeled, timeout)
    # Settle: two more processor exports and scrapes, so a late re-delivery counted twice would show up below.
    time.sleep(SETTLE_S)
    assert stack.value(model_sum(m.LABELED_PREDICTIONS, w.model)) == truth.labeled
    assert stack.value(model_sum(m.PREDICTIONS, w.model)) == truth.predictions
    assert stack.value(model_sum(m.CORRECT_PREDICTIONS, w.model)) == truth.correct
    accuracy = f"{model_sum(m.CORRECT_PREDICTIONS, w.model)} / {model_sum(m.LABELED_PREDICTIONS, w.model)}"
    assert stack.value(accuracy) == truth.accuracy
    cls, outcome = label_name(a.ML_CLASS), label_name(a.ML_OUTCOME)
    rows = stack.prometheus.query(model_sum(m.CLASSIFICATION_OUTCOMES, w.model, by=f"{cls}, {outcome}"))
    got = {(r["metric"][cls], r["metric"][outcome]): int(float(r["value"][1])) for r in rows}
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in truth.outcomes.items() if v}
    assert stack.value(model_sum(m.ORPHANED_LABELS, w.model)) == 0
    assert stack.value(model_sum(m.EXPIRED_PREDICTIONS, w.model)) == 0
