"""Batch / offline scoring with otel-ml: score a table, log every row, send the labels when they are known.

A nightly job scores a table and logs one event per row with ``log_predictions`` (vectorized: a fraction of a
microsecond per row on the caller). It uses its own business key as the prediction id, so the labels can be sent
later by any job that knows the key, with ``log_labels``. The events carry the scoring time (``timestamp``), so the
label delay the processor measures is the real one::

    python examples/batch_scoring.py --endpoint http://localhost:4317          # a collector or the processor
    python examples/batch_scoring.py --endpoint console                        # print the events instead
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import otel_ml

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def load_table(seed: int = 0) -> pd.DataFrame:
    """The table to score: iris measurements with a business key and the (later known) truth."""
    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=FEATURES)
    frame["species"] = np.asarray(iris.target_names)[iris.target]
    frame["site"] = np.where(np.arange(len(frame)) % 3 == 0, "north", "south")
    frame["order_id"] = [f"order-{i:05d}" for i in range(len(frame))]
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def score(frame: pd.DataFrame, model: LogisticRegression, monitor: otel_ml.ModelMonitor) -> pd.DataFrame:
    """Score every row and log the batch; returns the frame with predictions."""
    proba = model.predict_proba(frame[FEATURES])
    predicted = np.asarray(model.classes_)[np.argmax(proba, axis=1)]
    monitor.log_predictions(predicted, scores=proba, features=frame[FEATURES], segments={"site": frame["site"]},
                            prediction_ids=list(frame["order_id"]), timestamp=datetime.now(UTC))
    return frame.assign(predicted=predicted)


def send_labels(frame: pd.DataFrame, share: float = 0.5) -> int:
    """Later, in another job: send the truth for the rows that got one (only the model name and ids needed)."""
    known = frame.iloc[: int(len(frame) * share)]
    otel_ml.ModelMonitor("iris-batch").log_labels(list(known["order_id"]), list(known["species"]))
    return len(known)


def main(argv: list[str] | None = None) -> int:
    """Score the table, log it, send half of the labels, flush."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default="console", help="OTLP gRPC endpoint, or `console` to print")
    args = parser.parse_args(argv)
    if args.endpoint == "console":
        otel_ml.configure(protocol="console")
    else:
        otel_ml.configure(endpoint=args.endpoint, protocol="grpc", resource={"service.name": "iris-batch-job"})
    frame = load_table()
    train = frame.sample(frac=0.5, random_state=1)
    model = LogisticRegression(max_iter=1000).fit(train[FEATURES], train["species"])
    monitor = otel_ml.ModelMonitor("iris-batch", version="1", task="multiclass", classes=list(model.classes_),
                                   features=FEATURES, segments=["site"])
    scored = score(frame, model, monitor)
    labeled = send_labels(scored)
    otel_ml.shutdown(timeout=10.0)
    print(f"scored {len(scored)} rows, sent {labeled} labels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
