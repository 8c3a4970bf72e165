"""``otel-ml processor --config processor.yaml``: load -> validate -> run until SIGTERM/SIGINT.

Exit status: 0 after a clean shutdown, 2 on an invalid config (the message names the key and shows a valid example),
1 when the processor cannot start (port in use, unreadable store, a store written by a Python whose row encoding
this one does not read: see :mod:`otel_ml.processor.store.sqlite`; a PostgreSQL store that cannot be reached, refuses
the login or cannot be migrated: see :mod:`otel_ml.processor.store.postgres`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from otel_ml.errors import StoreError
from otel_ml.processor import config as cfg
from otel_ml.processor.config import dsn_without_password
from otel_ml.processor.stage import StageLoadError

_logger = logging.getLogger("otel_ml.processor")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otel-ml processor",
                                description="Run the otel-ml processor: OTLP logs in, joined quality metrics out.")
    p.add_argument("--config", required=True, help="processor YAML config (see the README's reference table)")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = cfg.load(args.config)
    except cfg.ConfigError as exc:
        print(f"otel-ml processor: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"otel-ml processor: {args.config} is valid")
        return 0
    from otel_ml.processor.server import ProcessorApp

    try:
        app = ProcessorApp(config).start()
    except StageLoadError as exc:
        print(f"otel-ml processor: invalid processor config at `reference`/`stages`: {exc}", file=sys.stderr)
        return 2
    except (OSError, StoreError) as exc:
        print(f"otel-ml processor: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    where = {"sqlite": config.store.path, "memory": "memory",
             "postgres": f"{dsn_without_password(config.store.dsn)} schema {config.store.schema}"}[config.store.backend]
    _logger.info("otel-ml processor ready (instance %s, store %s)", config.resolved_instance_id(), where)
    stop.wait()
    _logger.info("shutting down")
    app.stop()
    return 0
