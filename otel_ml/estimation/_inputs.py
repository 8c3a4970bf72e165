"""Column roles and input preparation shared by every estimator.

A reference (or analysis) DataFrame is turned into plain arrays once: the predicted class as a code into the
reference class list (``-1`` for a class the reference never had), the per-class scores aligned with that list, and
the selected features as a float matrix (categorical features as codes into the reference vocabulary, unknown values
and missing columns as NaN). Everything here is JSON-serialisable so artifacts never need pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from otel_ml.errors import DataError
from otel_ml.semconv.attributes import Task

MAX_CATEGORIES = 250
"""Categories kept per categorical feature (the most frequent); the rest map to "unknown" (NaN)."""


class EstimationError(DataError):
    """Invalid input to an estimator (wrong roles, missing columns, unfitted estimator)."""


@dataclass(frozen=True)
class ColumnRoles:
    """Which DataFrame column plays which role.

    Attributes:
        task: ``binary``, ``multiclass`` or ``regression``.
        y_pred: Column of the predicted class (classification) or value (regression).
        y_true: Column of the true class or value (reference only).
        scores: Score columns. Binary: one column with P(positive = last class) or one per class; multiclass: one
            per class, aligned with ``classes``. Empty when the model gives no scores.
        features: Feature columns used by learned estimators and drift.
        classes: Class order (strings); empty for regression.
    """

    task: str
    y_pred: str
    y_true: str = ""
    scores: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "task": self.task, "y_pred": self.y_pred, "y_true": self.y_true, "scores": list(self.scores),
            "features": list(self.features), "classes": list(self.classes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ColumnRoles:
        """Inverse of :meth:`to_json`."""
        return cls(
            task=str(data["task"]), y_pred=str(data["y_pred"]), y_true=str(data.get("y_true", "")),
            scores=tuple(data.get("scores", ())), features=tuple(data.get("features", ())),
            classes=tuple(str(c) for c in data.get("classes", ())),
        )

    @property
    def is_classification(self) -> bool:
        """True for binary and multiclass."""
        return self.task in Task.CLASSIFICATION


def as_class_strings(values: Any) -> np.ndarray:
    """Classes as strings, the way they travel on the wire (``str(x)``; ints and numpy ints agree).

    Floats that hold integers (``1.0``, typical of a column with missing values) become ``"1"`` so that a class read
    from a CSV matches the one an application sends.
    """
    arr = np.asarray(values, dtype=object)
    out = np.empty(arr.shape[0], dtype=object)
    for i, v in enumerate(arr):
        if isinstance(v, float | np.floating) and np.isfinite(v) and float(v).is_integer():
            out[i] = str(int(v))
        elif isinstance(v, bool | np.bool_):
            out[i] = "True" if v else "False"
        else:
            out[i] = str(v)
    return out


Scores = str | Sequence[str] | Mapping[Any, str] | None
"""Score columns: one column name, a list aligned with the classes, or a ``{class: column}`` mapping."""


def score_mapping(scores: Scores, classes: Sequence[Any] | None,
                  positive_class: Any = None) -> tuple[tuple[str, ...], list[str] | None, str | None]:
    """Normalises the score roles: ``(score columns, classes, positive class)``.

    A ``{class: column}`` mapping (NannyML's ``y_pred_proba`` style) gives the classes in its order when ``classes``
    is None, else its columns are put in ``classes`` order; a one-entry mapping is the binary P(that class), whose
    class becomes the positive class. Lists and single names pass through.

    Raises:
        EstimationError: A mapping whose classes differ from ``classes``, or a one-entry mapping naming another
            positive class than ``positive_class``.
    """
    positive = None if positive_class is None else str(as_class_strings([positive_class])[0])
    if not isinstance(scores, Mapping):
        cols = (scores,) if isinstance(scores, str) else tuple(scores or ())
        return cols, None if classes is None else [str(c) for c in as_class_strings(list(classes))], positive
    mapping = {str(as_class_strings([k])[0]): str(v) for k, v in scores.items()}
    if len(mapping) == 1:
        (cls, col), = mapping.items()
        if positive is not None and positive != cls:
            raise EstimationError(f"scores {{{cls!r}: {col!r}}} is P({cls!r}) but positive_class is {positive!r}: "
                                  f"give {{{positive!r}: <column of P({positive!r})>}} or positive_class={cls!r}")
        return (col,), None if classes is None else [str(c) for c in as_class_strings(list(classes))], cls
    if classes is None:
        return tuple(mapping.values()), list(mapping), positive
    order = [str(c) for c in as_class_strings(list(classes))]
    if set(order) != set(mapping):
        raise EstimationError(f"the score mapping's classes {sorted(mapping)} differ from classes {order}")
    return tuple(mapping[c] for c in order), order, positive


def resolve_roles(
    reference: pd.DataFrame,
    *,
    y_true: str,
    y_pred: str,
    scores: Scores,
    features: Sequence[str],
    classes: Sequence[Any] | None,
    task: str | None,
    positive_class: Any = None,
) -> ColumnRoles:
    """Validates column roles against a reference DataFrame and infers the task and class order when not given.

    Binary: the class order is ``[negative, positive]``; the positive class is ``positive_class`` when given (it is
    moved last), else the last of ``classes``, else the last of the sorted class strings. A single score column is
    P(positive).
    """
    score_cols, classes, positive = score_mapping(scores, classes, positive_class)
    needed = [y_true, y_pred, *score_cols, *features]
    missing = [c for c in needed if c not in reference.columns]
    if missing:
        raise EstimationError(f"reference has no column(s) {missing}; columns: {list(reference.columns)[:20]}")
    if task is None:
        task = Task.REGRESSION if pd.api.types.is_float_dtype(reference[y_true]) and not classes else (
            Task.BINARY if len(classes or set(as_class_strings(reference[y_true]))) <= 2 else Task.MULTICLASS)
    if task not in (*Task.CLASSIFICATION, Task.REGRESSION):
        raise EstimationError(f"task must be one of binary, multiclass, regression; got {task!r}")
    class_list: tuple[str, ...] = ()
    if task in Task.CLASSIFICATION:
        if classes is not None:
            class_list = tuple(str(c) for c in as_class_strings(list(classes)))
        else:
            seen = set(as_class_strings(reference[y_true])) | set(as_class_strings(reference[y_pred]))
            class_list = tuple(sorted(seen))
        if task == Task.BINARY and len(class_list) > 2:
            raise EstimationError(f"binary task with {len(class_list)} classes: {class_list[:5]}")
        if positive is not None:
            if task != Task.BINARY:
                raise EstimationError(f"positive_class is for binary tasks; this one is {task}")
            if positive not in class_list:
                if len(class_list) >= 2:
                    raise EstimationError(f"positive_class {positive!r} is not one of the classes {list(class_list)}")
                class_list = (*class_list, positive)
            reordered = (*(c for c in class_list if c != positive), positive)
            if len(score_cols) == len(class_list) == 2:  # one column per class: keep them aligned
                score_cols = tuple(score_cols[class_list.index(c)] for c in reordered)
            class_list = reordered
        if score_cols and len(score_cols) not in (1, len(class_list)):
            raise EstimationError(
                f"give one score column (binary P(positive)) or one per class ({len(class_list)}); got {score_cols}")
        if len(score_cols) == 1 and task != Task.BINARY:
            raise EstimationError("a single score column is only valid for binary tasks (P(positive class))")
    return ColumnRoles(task, y_pred, y_true, score_cols, tuple(features), class_list)


@dataclass
class FeatureEncoder:
    """Maps feature columns to a float matrix: numeric as is, categorical as codes of the reference vocabulary."""

    names: tuple[str, ...] = ()
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, names: Sequence[str]) -> FeatureEncoder:
        """Learns which features are categorical and their vocabulary (most frequent first, capped)."""
        cats: dict[str, list[str]] = {}
        for name in names:
            col = frame[name]
            if not is_numeric(col):
                counts = pd.Series(as_class_strings(col[col.notna()])).value_counts(sort=True)
                cats[name] = [str(v) for v in counts.index[:MAX_CATEGORIES]]
        return cls(tuple(names), cats)

    def is_categorical(self, name: str) -> bool:
        """Whether a feature is encoded as categorical codes."""
        return name in self.categories

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Float matrix ``(n, len(names))``; NaN for missing columns, values and unknown categories."""
        n = len(frame)
        out = np.full((n, len(self.names)), np.nan)
        for j, name in enumerate(self.names):
            if name not in frame.columns:
                continue
            col = frame[name]
            if name in self.categories:
                index = {c: i for i, c in enumerate(self.categories[name])}
                mask = col.notna().to_numpy()
                strings = as_class_strings(col[mask])
                out[mask, j] = [index.get(s, np.nan) for s in strings]
            else:
                out[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"names": list(self.names), "categories": self.categories}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        """Inverse of :meth:`to_json`."""
        return cls(tuple(data["names"]), {k: list(v) for k, v in data["categories"].items()})


def is_numeric(col: pd.Series) -> bool:
    """Numeric (and not boolean) column."""
    return bool(pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col))


@dataclass
class ClassificationInputs:
    """Prepared classification inputs.

    Attributes:
        pred: Predicted class codes into the reference classes, ``-1`` for an unseen class. Shape ``(n,)``.
        proba: Scores aligned with the classes, shape ``(n, k)``, or None without scores.
        X: Encoded features ``(n, f)`` (``f`` may be 0).
    """

    pred: np.ndarray
    proba: np.ndarray | None
    X: np.ndarray

    def __len__(self) -> int:
        return int(self.pred.shape[0])

    def take(self, idx: np.ndarray) -> ClassificationInputs:
        """Rows ``idx``."""
        return ClassificationInputs(self.pred[idx], None if self.proba is None else self.proba[idx], self.X[idx])

    def confidence(self) -> np.ndarray:
        """Score of the predicted class (max score for an unseen class); NaN without scores."""
        if self.proba is None:
            return np.full(len(self), np.nan)
        idx = np.where(self.pred >= 0, self.pred, np.argmax(self.proba, axis=1))
        return self.proba[np.arange(len(self)), idx]


@dataclass
class RegressionInputs:
    """Prepared regression inputs: predictions ``(n,)`` and encoded features ``(n, f)``."""

    pred: np.ndarray
    X: np.ndarray

    def __len__(self) -> int:
        return int(self.pred.shape[0])

    def take(self, idx: np.ndarray) -> RegressionInputs:
        """Rows ``idx``."""
        return RegressionInputs(self.pred[idx], self.X[idx])


def class_codes(values: Any, classes: Sequence[str]) -> np.ndarray:
    """Codes of class values into ``classes``; ``-1`` for values not in it."""
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter((index.get(s, -1) for s in as_class_strings(values)), dtype=np.int64, count=len(values))


def prepare_classification(frame: pd.DataFrame, roles: ColumnRoles, encoder: FeatureEncoder) -> ClassificationInputs:
    """Prepares an analysis (or reference) frame for a classification estimator."""
    if roles.y_pred not in frame.columns:
        raise EstimationError(f"frame has no prediction column {roles.y_pred!r}")
    pred = class_codes(frame[roles.y_pred].to_numpy(), roles.classes)
    proba: np.ndarray | None = None
    if roles.scores:
        missing = [c for c in roles.scores if c not in frame.columns]
        if missing:
            raise EstimationError(f"frame has no score column(s) {missing}")
        raw = frame[list(roles.scores)].to_numpy(dtype=float)
        if raw.shape[1] == 1:
            pos = np.clip(raw[:, 0], 0.0, 1.0)
            proba = np.column_stack([1.0 - pos, pos])
        else:
            proba = np.clip(raw, 0.0, None)
        proba = np.nan_to_num(proba, nan=1.0 / proba.shape[1])
    return ClassificationInputs(pred, proba, encoder.transform(frame))


def prepare_regression(frame: pd.DataFrame, roles: ColumnRoles, encoder: FeatureEncoder) -> RegressionInputs:
    """Prepares an analysis (or reference) frame for a regression estimator."""
    if roles.y_pred not in frame.columns:
        raise EstimationError(f"frame has no prediction column {roles.y_pred!r}")
    pred = pd.to_numeric(frame[roles.y_pred], errors="coerce").to_numpy(dtype=float)
    return RegressionInputs(pred, encoder.transform(frame))
