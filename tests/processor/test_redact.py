"""Secrets never reach the logs: URL user info, token query parameters, authorization values."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import pytest

from otel_ml.processor.export import split_credentials
from otel_ml.processor.redact import RedactingFormatter, redact
from tests.processor.procs_helpers import ProcessorProcess
from tests.support.procs import free_port


@pytest.mark.parametrize(("text", "expected"), [
    ("to http://alice:s3cret@collector:4317 now", "to http://alice:***@collector:4317 now"),
    ("https://TOKEN123@host/v1/metrics", "https://***@host/v1/metrics"),
    ("grpc target bob:pa55@collector.example:4317,", "grpc target bob:***@collector.example:4317,"),
    ("http://h/x?a=1&access_token=abc&b=2", "http://h/x?a=1&access_token=***&b=2"),
    ("https://h/x?X-Amz-Signature=f00#frag", "https://h/x?X-Amz-Signature=***#frag"),
    ("headers={'authorization': 'Bearer eyJhbGci.x.y'}", "headers={'authorization': 'Bearer ***'}"),
    ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
    # no secrets: unchanged
    ("mail alice@example.com", "mail alice@example.com"),
    ("http://collector:4317/v1/metrics?interval=10", "http://collector:4317/v1/metrics?interval=10"),
    ("[::1]:4317 and ml.model.name=fraud", "[::1]:4317 and ml.model.name=fraud"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_formatter_redacts_arguments_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter(logging.Formatter("%(message)s")))
    log = logging.getLogger("test_redact.formatter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("export to %s failed", "https://u:p4ss@h:4318/v1/metrics?token=t0k")
        try:
            raise ConnectionError("cannot reach http://u:p4ss@h:4318")
        except ConnectionError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert "p4ss" not in text and "t0k" not in text
    assert "https://u:***@h:4318/v1/metrics?token=***" in text
    assert "ConnectionError: cannot reach http://u:***@h" in text


def test_user_info_becomes_a_basic_auth_header() -> None:
    assert split_credentials("http://alice:s%40cret@127.0.0.1:4317") == (
        "http://127.0.0.1:4317", {"authorization": "Basic YWxpY2U6c0BjcmV0"})
    assert split_credentials("https://collector:4318") == ("https://collector:4318", None)


@pytest.mark.integration
def test_processor_logs_never_show_the_endpoint_password(tmp_path: Path) -> None:
    """A real processor exporting to an unreachable endpoint with credentials: its log (startup line, the OTLP
    exporter's failure lines) shows the endpoint redacted, never the password."""
    endpoint = f"http://alice:s3cret-pw@127.0.0.1:{free_port()}"
    proc = ProcessorProcess(tmp_path, metrics={"otlp": {"endpoint": endpoint, "protocol": "grpc",
                                                        "interval": "200ms"}}).start()
    try:
        deadline = time.monotonic() + 30
        while "exporting metrics" not in proc.process.log(100_000) or "127.0.0.1" not in \
                proc.process.log(100_000).split("exporting metrics", 1)[1]:
            assert time.monotonic() < deadline, proc.process.log()
            time.sleep(0.2)
        time.sleep(1.5)  # a few failed exports
    finally:
        proc.process.stop()
    log = proc.process.log(1_000_000)
    assert "s3cret-pw" not in log
    assert "alice:***@127.0.0.1" in log
