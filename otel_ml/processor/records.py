"""Row layout of predictions and labels inside the processor and its join stores.

A record is a plain tuple (cheap to build in the decode loop and to hand to ``sqlite3.executemany``) with the
columns below. A pending prediction has ``TASK`` set and the label columns ``None``; a pending label has ``TASK``
``None``; a *joined* row has both halves (:func:`join_rows`).
"""

from __future__ import annotations

from typing import Any, Final

Row = tuple[Any, ...]

COLUMNS: Final = ("k", "arrived", "model", "version", "task", "segment", "p_str", "p_num", "score", "p_aux",
                  "p_list", "p_ts", "l_str", "l_num", "l_list", "l_rel", "l_ts")
"""Column names (also the SQLite column order)."""

K, ARRIVED, MODEL, VERSION, TASK, SEGMENT, P_STR, P_NUM, SCORE, P_AUX, P_LIST, P_TS, L_STR, L_NUM, L_LIST, L_REL, \
    L_TS = range(len(COLUMNS))
"""Indexes: ``k`` join key (model + U+001F + id); ``arrived`` processor time (s) the record arrived; ``p_str``
predicted class; ``p_num`` predicted value (regression); ``score``; ``p_aux`` binary positive class; ``p_list`` JSON
list (multilabel set / ranking); ``p_ts``/``l_ts`` event times (s); ``l_str``/``l_num`` label as class / number;
``l_list`` JSON list; ``l_rel`` JSON relevance list."""

LABEL_START: Final = L_STR
"""First label column: ``row[:LABEL_START]`` is the prediction half, ``row[LABEL_START:]`` the label half."""

SEP: Final = "\x1f"


def join_key(model: str, prediction_id: str) -> str:
    """The join key of ``(model, id)``."""
    return f"{model}{SEP}{prediction_id}"


def prediction_id(row: Row) -> str:
    """The ``ml.prediction.id`` of a row."""
    return str(row[K]).split(SEP, 1)[1]


def is_prediction(row: Row) -> bool:
    """Whether the row has its prediction half."""
    return row[TASK] is not None


def join_rows(prediction: Row, label: Row) -> Row:
    """A joined row: the prediction half of ``prediction`` and the label half of ``label``."""
    return prediction[:LABEL_START] + label[LABEL_START:]


def has_label(row: Row) -> bool:
    """Whether the row carries a label half."""
    return row[L_TS] is not None
