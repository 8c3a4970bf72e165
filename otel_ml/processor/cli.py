"""``otel-ml processor --config processor.yaml``: load -> validate -> run until SIGTERM/SIGINT.

Exit status: 0 after a clean shutdown, 2 on an invalid config (the message names the key and shows a valid example),
1 when the processor cannot start (port in use, unreadable store, a store written by a Python whose row encoding
this one does not read: see :mod:`otel_ml.processor.store.sqlite`; a PostgreSQL store that cannot be reached, refuses
the login or cannot be migrated: see :mod:`otel_ml.processor.store.postgres`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from otel_ml.errors import StoreError
from otel_ml.processor import config as cfg
from otel_ml.processor import redact
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


def _block_stop_signals() -> bool:
    """Block SIGTERM/SIGINT in this (main) thread before any other thread exists, so every thread inherits the
    mask and the signals stay pending until :func:`_wait_for_stop_signal` takes them. With a Python signal handler
    instead, a signal delivered to another thread (grpc's, the HTTP server's) only sets a flag that the main thread
    checks when it next runs bytecode: a main thread blocked in an untimed wait never did, and SIGTERM was lost."""
    if not hasattr(signal, "pthread_sigmask"):
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    return True


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _wait_for_stop_signal(blocked: bool) -> int:
    if blocked:
        return signal.sigwait(_STOP_SIGNALS)
    stop = threading.Event()
    received: list[int] = []

    def _handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    for sig in _STOP_SIGNALS:
        signal.signal(sig, _handler)
    while not stop.wait(0.2):  # timed: the main thread runs bytecode (and handlers) at least every 0.2 s
        pass
    return received[0]


def _watchdog(grace: float) -> None:
    """Exit 1 if the graceful shutdown overruns its grace period by more than 2 s (a hung disk or exporter)."""
    def expire() -> None:
        _logger.error("shutdown did not finish within shutdown_grace (%.0fs) + 2s: exiting now", grace)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(grace + 2.0, expire)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact.install()
    try:
        config = cfg.load(args.config)
    except cfg.ConfigError as exc:
        print(f"otel-ml processor: {redact.redact(str(exc))}", file=sys.stderr)
        return 2
    if args.check:
        print(f"otel-ml processor: {args.config} is valid")
        return 0
    from otel_ml.processor.server import ProcessorApp

    blocked = _block_stop_signals() if threading.current_thread() is threading.main_thread() else False
    try:
        try:
            app = ProcessorApp(config).start()
        except StageLoadError as exc:
            print(f"otel-ml processor: invalid processor config at `reference`/`stages`: {exc}", file=sys.stderr)
            return 2
        except (OSError, StoreError) as exc:
            print(f"otel-ml processor: cannot start: {redact.redact(str(exc))}", file=sys.stderr)
            return 1
        where = {"sqlite": config.store.path, "memory": "memory",
                 "postgres": f"{dsn_without_password(config.store.dsn)} schema {config.store.schema}"}[
            config.store.backend]
        _logger.info("otel-ml processor ready (instance %s, store %s)", config.resolved_instance_id(), where)
        signum = _wait_for_stop_signal(blocked)
        _logger.info("received %s: shutting down within %.0fs", signal.Signals(signum).name, config.shutdown_grace)
        _watchdog(config.shutdown_grace)
        clean = app.stop()
        _logger.info("stopped%s", "" if clean else " (requests still in flight at the deadline were not acknowledged "
                     "and will be retried by their senders)")
        return 0
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
