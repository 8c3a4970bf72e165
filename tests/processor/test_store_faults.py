"""Storage faults, for real, for every backend (tests/processor/store_backends.py): the store never ends up in an
unknown transaction state, recovers by itself, and what it holds equals what was acknowledged.

Each case: commit a baseline; inject the fault; run steps that need storage (new records, labels joining the
baseline, aggregate totals) until they fail with ``StorageError`` of the fault's kind, rolling back as the processor
does; heal; re-send every step that was not acknowledged until it commits (the sender's retry); then check against
the truth: every record new exactly once (nothing was committed piece by piece during the fault), joins exactly
once, pending count and persisted totals equal to what was acknowledged, the same again after a reopen, the failure
counted by kind, and no write ever ran outside a transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_ml.processor.records import Row
from otel_ml.processor.store import BaseJoinStore
from otel_ml.processor.store.base import StorageError
from tests.processor.conftest import label_row, pred_row
from tests.processor.store_backends import BACKENDS, FAULT_CASES, Fault, StoreBackend

T0 = 1_700_000_000.0
BASE = 200
STEP = 1500
"""Predictions per step during the fault: hundreds of KiB, more than the WAL holds after the baseline."""
TOTAL = ("ml.test.committed", ())


@pytest.fixture
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[StoreBackend, Fault]]:
    name, kind = request.param
    backend = BACKENDS[name](tmp_path, request)
    f = backend.fault(kind)
    try:
        yield backend, f
    finally:
        f.cleanup()


def _step(n: int) -> tuple[list[Row], list[Row]]:
    """Step ``n``: new predictions (bulky: they need new storage) and labels of a slice of the baseline."""
    preds = [pred_row(f"s{n}-{i}", T0 + n, cls=f"class-{i % 7}-{'x' * 120}") for i in range(STEP)]
    labels = [label_row(f"base{i}", T0 + n, value="1") for i in range(n * 20, n * 20 + 20)]
    return preds, labels


def _run(store: BaseJoinStore, n: int, committed: list[float]) -> tuple[int, int, int]:
    """One step as the processor runs it: ingest, commit the new total; rollback on failure (re-raised)."""
    preds, labels = _step(n)
    try:
        res = store.ingest(preds, labels, T0 + n)
        new = len(res.new_predictions) + len(res.new_labels)
        store.commit({TOTAL: committed[0] + new})
    except BaseException:
        store.rollback()
        raise
    committed[0] += new
    return len(res.new_predictions), len(res.new_labels), len(res.joined)


@pytest.mark.parametrize("fault", FAULT_CASES, indirect=True, ids=[f"{b}-{k}" for b, k in FAULT_CASES])
def test_fault_rolls_back_and_recovers_without_reopen(fault: tuple[StoreBackend, Fault],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    backend, f = fault
    caplog.set_level(logging.INFO, logger="otel_ml.processor.store")
    store = f.open()
    store.ingest([pred_row(f"base{i}", T0, cls="1") for i in range(BASE)], [], T0)
    committed = [float(BASE)]
    store.commit({TOTAL: committed[0]})

    f.inject(store)
    acked: dict[int, tuple[int, int, int]] = {}
    failed: list[int] = []
    for n in range(4):
        if n == 3:  # past the reopen backoff: a store that closed its connection tries to reopen on the broken storage
            time.sleep(0.6)
        try:
            acked[n] = _run(store, n, committed)
        except StorageError as exc:
            assert exc.kind == f.kind, exc
            failed.append(n)
        store.rollback()  # always harmless: outside a transaction it does nothing, and it never raises
    assert failed, f"the {f.kind} fault made no step fail"
    errors = store.take_errors()
    assert set(errors) == {f.kind} and errors[f.kind] >= 2, errors  # the first failure and the later attempt
    assert backend.writes_outside_transactions(store) == []
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # the episode is logged once by its kind (again only if the kind changes: injecting may first cut connections)
    assert logged and f"({f.kind})" in logged[-1] and len(logged) <= 2, logged
    caplog.clear()

    f.heal(store)
    deadline = time.monotonic() + 20
    for n in failed:  # the sender re-sends every unacknowledged step until it is acknowledged
        while True:
            try:
                acked[n] = _run(store, n, committed)
                break
            except StorageError:
                assert time.monotonic() < deadline, f"no recovery from {f.kind} within 20s"
                time.sleep(0.05)

    recovered = [r.getMessage() for r in caplog.records if "recovered after" in r.getMessage()]
    assert len(recovered) == 1 and f.kind in recovered[0], caplog.text

    for n in range(4):  # every step counted exactly once: nothing of a failed attempt was committed
        assert acked[n] == (STEP, 20, 20), (n, acked[n])
    pending = BASE + 4 * STEP - 4 * 20
    assert store.pending() == pending
    assert store.load_aggregates() == {TOTAL: float(BASE + 4 * (STEP + 20))}
    again = store.ingest(*_step(1), T0 + 9)  # a late duplicate of an acknowledged step changes nothing
    assert (again.new_predictions, again.new_labels, again.duplicates) == ([], [], STEP + 20)
    store.rollback()
    assert backend.writes_outside_transactions(store) == []

    store.close()
    reopened = f.reopen()
    assert reopened.pending() == pending
    assert reopened.load_aggregates() == {TOTAL: float(BASE + 4 * (STEP + 20))}

