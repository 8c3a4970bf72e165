"""Scale-out: otel-ml processor replicas behind the collector's load_balancing exporter (scaleout-static.yaml).

Records are routed by the hash of ``ml.prediction.id``, so a prediction and its label meet on one replica and the
sum over replicas equals the truth. When the replica list changes, labels whose prediction is already pending on
a replica may be routed to another one: the tests measure how many, and that the loss is visible (orphaned labels,
expired predictions) rather than silent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from otel_ml.semconv import attributes as a
from otel_ml.semconv import label_name, prom_name
from otel_ml.semconv import metrics as m
from tests.integration.collector_stack import GATEWAY, LB_EXPORTER, SCALEOUT_DNS, Stack, wait_for
from tests.integration.collector_workload import assert_matches_truth, make_workload, model_sum

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = label_name(a.ML_MODEL_NAME)
REPLICA = "exported_instance"  # service.instance.id; Prometheus renames the exporter's `instance` on scrape


def per_replica(stack: Stack, metric: m.MetricSpec, model: str) -> dict[str, float]:
    rows = stack.prometheus.query(f'sum by ({REPLICA}) ({prom_name(metric)}{{{MODEL}="{model}"}})')
    return {r["metric"].get(REPLICA, ""): float(r["value"][1]) for r in rows}


def test_three_replicas_join_everything(tmp_path: Path) -> None:
    w = make_workload(900, seed=23)
    with Stack(tmp_path, replicas=3) as stack:
        stack.send(w.predictions(), batch=150)
        stack.send(w.labels(), batch=150)
        assert_matches_truth(stack, w, w.truth())
        shares = per_replica(stack, m.LABELED_PREDICTIONS, w.model)
        assert sorted(shares) == ["replica-0", "replica-1", "replica-2"]
        assert all(v > 0.15 * 900 for v in shares.values()), shares
        assert stack.collector.exporter_sent(LB_EXPORTER) == 2 * 900


def test_dns_resolver_end_to_end(tmp_path: Path) -> None:
    """scaleout-dns.yaml for real: the resolver's name (127.0.0.1 here) gives the replica behind load_balancing."""
    w = make_workload(300, seed=37)
    with Stack(tmp_path, configs=(GATEWAY, SCALEOUT_DNS)) as stack:
        stack.send(w.predictions(), batch=100)
        stack.send(w.labels(), batch=100)
        assert_matches_truth(stack, w, w.truth())
        assert stack.collector.exporter_sent(LB_EXPORTER) == 2 * len(w.ids)


def test_replica_restart_keeps_the_ring(tmp_path: Path) -> None:
    """A replica that is down keeps its ids: its records wait in the load_balancing queue, nothing is re-hashed."""
    w = make_workload(600, seed=31)
    with Stack(tmp_path, replicas=2) as stack:
        down = stack.processors[1]
        down.stop()
        stack.send(w.predictions(), batch=100)
        stack.send(w.labels(), batch=100)
        wait_for(lambda: stack.collector.queue_size(LB_EXPORTER) > 0, timeout=20, what="replica-1's share queued")
        time.sleep(2)
        assert stack.value(model_sum(m.LABELED_PREDICTIONS, w.model)) < len(w.ids)
        down.start()
        assert_matches_truth(stack, w, w.truth())
        assert per_replica(stack, m.LABELED_PREDICTIONS, w.model).get("replica-1", 0) > 0


@pytest.mark.parametrize(("before", "after"), [(2, 3), (3, 2)])
def test_replica_change_with_joins_in_flight(tmp_path: Path, before: int, after: int,
                                             record_property: Callable[[str, object], None]) -> None:
    """Worst case: every prediction is pending when the replica list changes; then all labels arrive.

    The labels of the ids whose ring position moved land on a replica that never saw the prediction. Both halves
    stay pending until ``label_window`` and are then counted (orphaned labels, expired predictions).
    """
    n = 900
    w = make_workload(n, seed=29)
    store = {"label_window": "8s", "expire_interval": "1s"}
    with Stack(tmp_path, replicas=max(before, after), store=store) as stack:
        replicas = stack.processors
        stack.set_replicas(replicas[:before])
        stack.send(w.predictions(), batch=150)
        stack.wait_value(model_sum(m.PREDICTIONS, w.model), n)
        stack.set_replicas(replicas[:after])
        stack.send(w.labels(), batch=150)
        stack.wait_value(model_sum(m.LABELS, w.model), n)

        # Every label either joined at once or is orphaned once the window passes; each orphan leaves one expired
        # prediction behind on the replica that had it.
        stack.wait_value(f"{model_sum(m.LABELED_PREDICTIONS, w.model)} + {model_sum(m.ORPHANED_LABELS, w.model)}",
                         n, timeout=60)
        joined = stack.value(model_sum(m.LABELED_PREDICTIONS, w.model))
        lost = n - joined
        stack.wait_value(model_sum(m.EXPIRED_PREDICTIONS, w.model), lost, timeout=60)
        moved = lost / n
        accuracy = stack.value(model_sum(m.CORRECT_PREDICTIONS, w.model)) / joined
        record_property("moved_fraction", moved)
        print(f"\nreplicas {before}->{after}: {int(lost)} of {n} in-flight joins lost ({moved:.1%}); accuracy of "
              f"the joined ones {accuracy:.3f}, of all {w.truth().accuracy:.3f}")
        # Consistent hashing moves about 1/max(before, after) of the ids; allow the hash's unevenness.
        expected = 1 / max(before, after)
        assert 0.4 * expected < moved < 1.8 * expected, moved
