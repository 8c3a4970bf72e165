"""The real otel-ml processor on a simulated clock, for the 30-day story tests: ``python -m tests.alerts.story_processor
CONFIG CLOCK_FILE``.

It is :class:`otel_ml.processor.server.ProcessorApp` as ``otel-ml processor`` runs it (gRPC receiver, SQLite store,
estimation stage, Prometheus scrape endpoint), with two test hooks only: its clock reads the simulated time from
``CLOCK_FILE`` (written atomically by the test), so arrival times, the label window, the expiry sweep and the
reference reload follow the story's days; and its writer ticks every 20 ms instead of every second, so a simulated
hour does not cost a real second.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from otel_ml.processor import config as cfg
from otel_ml.processor.server import ProcessorApp

TICK_INTERVAL_S = 0.02


class FileClock:
    """Seconds since the epoch, as last written to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> float:
        return float(self.path.read_text())


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = cfg.load(argv[0])
    app = ProcessorApp(config, clock=FileClock(Path(argv[1])))
    app.writer.tick_interval = TICK_INTERVAL_S
    app.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("story processor ready", flush=True)
    stop.wait()
    app.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
