"""OTLP over TLS (``https://`` endpoints) with a private CA given as ``certificate_file``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import otel_ml
from otel_ml.semconv import attributes as a
from tests.support.otlp_sink import OtlpSink


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "server.pem", d / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return str(crt), str(key)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_https_with_private_ca(cert: tuple[str, str], protocol: str) -> None:
    with OtlpSink(tls=cert) as sink:
        endpoint = sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint
        assert endpoint.startswith("https://")
        otel_ml.configure(endpoint=endpoint, protocol=protocol, certificate_file=cert[0], schedule_delay=0.05)
        pid = otel_ml.ModelMonitor("m", task="regression").log_prediction(1.5)
        assert otel_ml.force_flush(10)
        (rec,) = sink.wait_for_log_records(1)
        assert rec.attributes[a.ML_PREDICTION_ID] == pid


def test_missing_certificate_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(otel_ml.ConfigurationError, match="does not exist"):
        otel_ml.configure(endpoint="https://127.0.0.1:4318", certificate_file=str(tmp_path / "nope.pem"))


def test_untrusted_server_certificate_drops_and_counts(cert: tuple[str, str]) -> None:
    from otel_ml.instrumentation.export_queue import ExportQueue
    from otel_ml.instrumentation.state import STATE

    with OtlpSink(tls=cert, grpc_enabled=False) as sink:
        otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=0.05, max_retry=0.3)
        otel_ml.ModelMonitor("m", task="regression").log_prediction(1.5)
        assert otel_ml.force_flush(10)
        export_queue = STATE.queue
        assert isinstance(export_queue, ExportQueue)
        assert dict(export_queue.metrics.dropped) == {("m", "export_failed"): 1}
        assert sink.log_records() == []
