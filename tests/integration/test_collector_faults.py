"""Faults with the real collector in the loop: nothing lost, nothing counted twice.

The collector's exporter to the processor has a persistent sending queue (file_storage) and retries forever; the
processor acknowledges a request only after committing it, and re-sent records change nothing. Whatever the fault,
Prometheus must end with exactly the truth computed with scikit-learn.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from otel_ml.semconv import metrics as m
from otel_ml.semconv import prom_name
from tests.integration.collector_stack import GATEWAY, ML_EXPORTER, Stack, wait_for
from tests.integration.collector_workload import assert_matches_truth, make_workload

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_processor_stopped_then_restarted(tmp_path: Path) -> None:
    w = make_workload(600, seed=11)
    with Stack(tmp_path) as stack:
        processor = stack.processors[0]
        stack.send(w.predictions(range(0, 300)) + w.labels(range(0, 300)))
        processor.stop()
        # The app keeps sending while the processor is down: the collector accepts and queues on disk.
        stack.send(w.predictions(range(300, 600)) + w.labels(range(300, 600)))
        wait_for(lambda: stack.collector.queue_size(ML_EXPORTER) > 0, timeout=20, what="data queued in the collector")
        time.sleep(3)  # a few failed retries
        processor.start()
        assert_matches_truth(stack, w, w.truth())
        assert stack.collector.queue_size(ML_EXPORTER) == 0


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_collector_restarted_with_data_queued(tmp_path: Path, how: str) -> None:
    w = make_workload(500, seed=13)
    with Stack(tmp_path) as stack:
        processor = stack.processors[0]
        processor.stop()
        stack.send(w.predictions() + w.labels())
        wait_for(lambda: stack.collector.queue_size(ML_EXPORTER) > 0, timeout=20, what="data queued in the collector")
        if how == "kill9":
            stack.collector.kill9()
        else:
            assert stack.collector.stop() == 0
        stack.collector.start()  # same ports, same queue directory
        processor.start()
        assert_matches_truth(stack, w, w.truth())


def test_processor_kill9_mid_stream(tmp_path: Path) -> None:
    """kill -9 while the collector is delivering: the first half is under way, the second half is sent while the
    processor is dead (the sender waits for the kill, so "mid-stream" does not depend on the machine's speed)."""
    w = make_workload(1200, seed=17)
    records = [r for i in range(0, 1200, 50) for r in (*w.predictions(range(i, i + 50)), *w.labels(range(i, i + 50)))]
    half = len(records) // 2
    with Stack(tmp_path) as stack:
        processor = stack.processors[0]
        sender = stack.send_in_background(records, batch=20, pause_after=half)
        wait_for(lambda: stack.collector.exporter_sent(ML_EXPORTER) >= half // 2, timeout=60, what="stream under way")
        processor.kill9()
        assert stack.collector.exporter_sent(ML_EXPORTER) <= half, "the sender did not wait for the kill"
        sender.resume()
        wait_for(lambda: stack.collector.queue_size(ML_EXPORTER) > 0, timeout=20, what="data queued in the collector")
        time.sleep(2)  # a few failed retries
        processor.start()
        sender.finish()
        assert_matches_truth(stack, w, w.truth())


def test_redelivered_requests_are_not_counted_twice(tmp_path: Path) -> None:
    """The collector gives up waiting (1 ms deadline) while the processor commits: the requests stay queued, are
    delivered again and again, and once more after a restart with the shipped timeout. The processor sees records
    many times, counts them once.

    Requests of 200 records (about 50 kB, within one HTTP/2 flow-control window) take the processor well over 1 ms
    even when they only repeat committed records: with requests of 50, a re-delivery sometimes beat the deadline on
    an idle machine, and the queue could drain before the restart.
    """
    w = make_workload(400, seed=19)
    records = w.predictions() + w.labels()
    impatient = "yaml:exporters::otlp_grpc/otel_ml::timeout: 1ms"
    with Stack(tmp_path, configs=(GATEWAY, impatient)) as stack:
        stack.send(records, batch=200)
        received = f"sum({prom_name(m.PROCESSOR_RECORDS_RECEIVED)})"
        wait_for(lambda: stack.value(received) > len(records), timeout=60,
                 what="records delivered more than once despite the timeouts")
        assert stack.collector.queue_size(ML_EXPORTER) > 0, "nothing left to re-deliver: the deadline was met"
        assert stack.collector.stop() == 0
        stack.collector.process.argv = [a for a in stack.collector.process.argv if a != f"--config={impatient}"]
        stack.collector.start()
        wait_for(lambda: stack.collector.queue_size(ML_EXPORTER) == 0, timeout=60, what="queue re-delivered")
        assert_matches_truth(stack, w, w.truth())
