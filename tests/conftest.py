"""Suite-wide fixtures: no real process started by a test outlives the session."""

from __future__ import annotations

import atexit
from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer
from tests.support.procs import stop_all_started

atexit.register(stop_all_started)


@pytest.fixture(autouse=True, scope="session")
def _reap_processes() -> Iterator[None]:
    yield
    stop_all_started()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the session (started on first use; see tests/support/postgres.py)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()
