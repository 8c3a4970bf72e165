"""A model-serving process instrumented with otel-ml, for the integration tests (run as a subprocess).

Usage: ``python -m tests.alerts.serving_app <collector-grpc host:port> <seconds> <healthy|degraded>``.

Serves one multiclass model ``serving`` for ``seconds``: every call is an instrumented inference (real
``ml.client.*`` metrics and real prediction events through the collector); its label follows at once. Degraded: one
call in four raises (client inference errors), one in four takes 0.6 s (above the latency SLO), every other
prediction is wrong.
"""

from __future__ import annotations

import sys
import time

import otel_ml

CLASSES = ["cat", "dog", "fox"]


def main(argv: list[str]) -> int:
    """Serve until the time is up, then flush."""
    endpoint, seconds, mode = argv[0], float(argv[1]), argv[2]
    otel_ml.configure(endpoint=f"http://{endpoint}", protocol="grpc", metric_interval=1.0, schedule_delay=0.2,
                      resource={"service.name": "ml-serving", "service.instance.id": "serving-1"})
    monitor = otel_ml.ModelMonitor("serving", version="v1", task="multiclass", classes=CLASSES, segments=["region"])
    degraded = mode == "degraded"
    state = {"i": 0}

    @monitor.instrument(segments=lambda args, kwargs, result: {"region": "eu" if args[0] % 2 else "us"})
    def predict(i: int) -> str:
        if degraded and i % 4 == 3:
            raise ValueError("feature out of range")
        time.sleep(0.6 if degraded and i % 4 == 2 else 0.001)  # degraded: a quarter of the calls break the SLO
        truth = CLASSES[i % 3]
        return CLASSES[(i + 1) % 3] if degraded and i % 2 else truth

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        i = state["i"]
        state["i"] += 1
        try:
            predict(i)
        except ValueError:
            continue
        pid = otel_ml.current_prediction_id()
        if pid is not None:
            monitor.log_label(pid, CLASSES[i % 3])
        time.sleep(0.02)
    otel_ml.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
