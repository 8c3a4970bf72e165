"""Score orientation, checked at fit time: a score column read the wrong way round gives plausible, wrong estimates.

A binary model's single score column is read as P(positive class), the positive class being the last of the class
order (``[negative, positive]``: the ``positive_class`` given, else the last of ``classes``, else the last of the
sorted class strings). With labels ``malignant``/``benign`` and a column holding P(benign), or with
``classes=[1, 0]`` and a column of P(1), every estimate is computed on flipped probabilities: nothing fails, the
reference ROC AUC is near 0 and the estimated accuracy stays flat while the real one falls. Multiclass score columns
in another order than ``classes`` fail the same way.

:func:`check_orientation` refuses such a reference with an error that says how to fix it:

* binary: the reference ROC AUC of the positive-class score is *significantly* below 0.5 (its upper bound,
  :data:`Z_REFUSE` Hanley-McNeil standard errors above it, is below 0.5; at least :data:`MIN_EACH` rows of each
  class);
* any task with scores: the score of the predicted class separates right from wrong predictions significantly
  *worse* than chance (the same test on the AUC of confidence vs correctness, at least :data:`MIN_EACH` right and
  wrong predictions): scores that anti-correlate with correctness are not the model's confidence;
* multiclass: the predicted class is the top-scored class for fewer than half of the rows while a permutation of
  the score columns would make it so for more than 90 %: the columns are not in ``classes`` order.

A significance test rather than a plain "< 0.5": a near-perfect model with two errors, both confident, has a
correctness AUC below 0.5 by chance, and must not be refused.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from otel_ml.estimation import metrics as m
from otel_ml.estimation._inputs import ClassificationInputs, ColumnRoles, EstimationError
from otel_ml.semconv.attributes import Task

Z_REFUSE = 2.0
"""Standard errors by which an AUC must lie below 0.5 for the reference to be refused."""
MIN_AGREEMENT = 0.5
"""Multiclass: below this share of rows whose prediction is the top-scored class, the column order is suspect."""
PERMUTED_AGREEMENT = 0.9
"""... and a permutation of the columns reaching this share proves it."""
MIN_EACH = 10
"""Rows each side of an AUC test needs (positives and negatives; right and wrong predictions). A near-perfect model
whose two errors are its two most confident predictions (label noise) is not evidence of a misread score: the
class-label ROC AUC (binary) and the column-order check (multiclass) catch a misread score at any error count."""


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an ROC AUC estimated from ``n_pos`` positives and ``n_neg``
    negatives."""
    if n_pos == 0 or n_neg == 0 or not math.isfinite(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


@dataclass(frozen=True)
class Orientation:
    """How the scores were read, and the evidence that this is the right way round.

    Attributes:
        task: ``binary`` or ``multiclass``.
        classes: Class order (binary: ``[negative, positive]``).
        scores: Score columns (binary single column: P(positive)).
        positive_class: Binary: the positive class; None otherwise.
        roc_auc: Binary: reference ROC AUC of the positive-class score (NaN: one class only).
        roc_auc_se: Its standard error.
        correctness_auc: AUC of the predicted class's score for telling right from wrong predictions (NaN: no
            errors or no right predictions).
        correctness_auc_se: Its standard error.
        top_score_agreement: Share of rows whose predicted class has the highest score (NaN: no scores).
    """

    task: str
    classes: list[str]
    scores: list[str]
    positive_class: str | None
    roc_auc: float
    roc_auc_se: float
    correctness_auc: float
    correctness_auc_se: float
    top_score_agreement: float

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Orientation:
        """Inverse of :meth:`to_json`."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def describe(self) -> str:
        """One paragraph for ``otel-ml reference report``."""
        if not self.scores:
            return "no score columns: correctness is estimated from the predicted class alone"
        auc = f"reference ROC AUC {self.roc_auc:.3f}, " if self.positive_class is not None else ""
        if self.positive_class is not None and len(self.scores) == 1:
            read = (f"score column {self.scores[0]!r} read as P({self.positive_class!r}), the positive class "
                    f"(last of classes {self.classes})")
        else:
            read = "score columns " + ", ".join(f"{c}={s}" for c, s in zip(self.classes, self.scores, strict=False))
            if self.positive_class is not None:
                read += f"; positive class {self.positive_class!r}"
        return (f"{read}; {auc}correctness AUC of the predicted class's score {self.correctness_auc:.3f}, "
                f"predicted class = top score on {self.top_score_agreement:.1%} of rows")


def check_orientation(inputs: ClassificationInputs, y: np.ndarray, roles: ColumnRoles) -> Orientation:
    """Measures the orientation evidence on a reference and refuses a misread one (module docstring).

    Args:
        inputs: The prepared reference (scores aligned with ``roles.classes``).
        y: True class codes.
        roles: Column roles.

    Raises:
        EstimationError: The scores are read the wrong way round; the message says how to fix the column or the
            class order.
    """
    binary = roles.task == Task.BINARY and len(roles.classes) == 2
    positive = roles.classes[-1] if binary else None
    nan = float("nan")
    if inputs.proba is None:
        return Orientation(roles.task, list(roles.classes), list(roles.scores), positive, nan, nan, nan, nan, nan)
    proba = inputs.proba
    correct = inputs.pred == y
    roc = roc_se = nan
    is_pos = y == 1
    if binary:
        roc = m.realized_roc_auc(is_pos, proba[:, 1])
        roc_se = auc_se(roc, int(is_pos.sum()), int((~is_pos).sum()))
    conf = inputs.confidence()
    corr = m.realized_roc_auc(correct, conf)
    corr_se = auc_se(corr, int(correct.sum()), int((~correct).sum()))
    known = inputs.pred >= 0
    top = np.argmax(proba, axis=1)
    agreement = float(np.mean(top[known] == inputs.pred[known])) if known.any() else nan
    orientation = Orientation(roles.task, list(roles.classes), list(roles.scores), positive, roc, roc_se, corr,
                              corr_se, agreement)
    enough = min(int(is_pos.sum()), int((~is_pos).sum())) >= MIN_EACH if binary else False
    if enough and math.isfinite(roc) and roc + Z_REFUSE * roc_se < 0.5:
        other = roles.classes[0]
        column = roles.scores[-1]
        raise EstimationError(
            f"the scores are read the wrong way round: {column!r} is read as P({positive!r}) (the positive class, "
            f"last of classes {list(roles.classes)}), but on the reference it ranks {positive!r} below {other!r} "
            f"(ROC AUC {roc:.3f}). It looks like P({other!r}): name the positive class {other!r} "
            f"(positive_class={other!r}, --positive-class {other}; or classes [{positive!r}, {other!r}], "
            f"--classes {positive} {other}), or give a column of P({positive!r}) (1 - {column})")
    if not binary and known.any() and agreement < MIN_AGREEMENT:
        _check_column_order(inputs, roles, agreement)
    enough = min(int(correct.sum()), int((~correct).sum())) >= MIN_EACH
    if enough and math.isfinite(corr) and corr + Z_REFUSE * corr_se < 0.5:
        raise EstimationError(
            f"the score of the predicted class anti-correlates with correctness on the reference (AUC {corr:.3f} "
            f"for telling right from wrong predictions; chance is 0.5): the score columns {list(roles.scores)} do "
            f"not hold the model's probabilities of classes {list(roles.classes)} in that order. Check which class "
            "each column belongs to (a {class: column} mapping avoids order mistakes) and, for one binary column, "
            "that it is P(positive class)")
    return orientation


def _check_column_order(inputs: ClassificationInputs, roles: ColumnRoles, agreement: float) -> None:
    from scipy.optimize import linear_sum_assignment

    assert inputs.proba is not None
    known = inputs.pred >= 0
    k = len(roles.classes)
    top = np.argmax(inputs.proba[known], axis=1)
    confusion = np.zeros((k, k))
    np.add.at(confusion, (inputs.pred[known], top), 1.0)
    rows, cols = linear_sum_assignment(-confusion)
    permuted = float(confusion[rows, cols].sum() / max(known.sum(), 1))
    if permuted >= PERMUTED_AGREEMENT:
        hint = ", ".join(f"{roles.scores[c]!r}, given for {roles.classes[c]!r}, looks like P({roles.classes[r]!r})"
                         for r, c in zip(rows, cols, strict=True) if r != c)
        raise EstimationError(
            f"the score columns are not in classes order: the predicted class is the top-scored class on only "
            f"{agreement:.1%} of the reference rows, {permuted:.1%} with the columns permuted ({hint}). Give the "
            f"score columns in the order of classes {list(roles.classes)}, or a {{class: column}} mapping")
