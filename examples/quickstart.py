"""Quickstart: instrument a scikit-learn model with otel-ml and print every event it emits.

Run: ``.venv/bin/python examples/quickstart.py``. No collector needed: the console transport prints each encoded
OTLP log record (decoded back with opentelemetry-proto) and each client metric data point. In production, point
otel-ml at your collector instead: ``otel_ml.configure(endpoint="http://collector:4318")`` or just set
``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import otel_ml


def main() -> int:
    """Train, instrument, predict, label, and print what was emitted."""
    data = load_iris(as_frame=True)
    features = data.frame[data.feature_names].rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    species = np.asarray(data.target_names)[data.target]
    rng = np.random.default_rng(7)
    order = rng.permutation(len(features))
    train, test = order[:120], order[120:]
    model = LogisticRegression(max_iter=500).fit(features.iloc[train], species[train])

    otel_ml.configure(transport=otel_ml.ConsoleTransport(metrics=True), resource={"service.name": "iris-quickstart"})
    monitor = otel_ml.ModelMonitor("iris", version="1.0.0", task="multiclass", segments=["channel"])

    # 1. Decorate the model's predict_proba: classes come from model.classes_, features from the DataFrame.
    predict_proba = monitor.instrument(model.predict_proba,
                                       segments=lambda args, kwargs, result: {"channel": "batch-api"})
    batch = features.iloc[test[:3]]
    proba = predict_proba(batch)
    ids = otel_ml.current_prediction_ids() or []
    print(f"predicted {model.classes_[proba.argmax(axis=1)].tolist()} with ids {list(ids)}")

    # 2. Ground truth arrives later (any process could send it: only the model name and the ids are needed).
    otel_ml.ModelMonitor("iris").log_labels(ids, species[test[:3]])

    # 3. One prediction logged by hand, with its label known at once (a pair).
    row = features.iloc[test[3]]
    monitor.log_pair(model.predict(row.to_frame().T)[0], species[test[3]], features=row.to_dict(),
                     segments={"channel": "web"})

    print("--- emitted (events: event_name attributes; then metrics):")
    otel_ml.shutdown()  # flushes: the console exporter prints every event
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
