"""TLS, mTLS and bearer/basic auth on the gRPC and HTTP receivers and the scrape endpoint, over real sockets.

Every refusal is asserted with its status and its count in ``ml.processor.auth.failures{ml.reason, ml.receiver}``;
a good request afterwards still commits.
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from otel_ml.processor import config as cfg
from otel_ml.processor.server import ProcessorApp
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import AuthFailureReason as R
from tests.processor.conftest import prediction_event
from tests.support import otlp_events as ev
from tests.support.certs import Pki, make_pki

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Pki]:
    d = tmp_path_factory.mktemp("pki")
    return make_pki(d, "ca"), make_pki(d, "other")


@pytest.fixture
def secured(pki: tuple[Pki, Pki], tmp_path: Path) -> Iterator[tuple[ProcessorApp, Path]]:
    good, _ = pki
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    password = tmp_path / "scrape-password"
    password.write_text("scrape-pw\n")
    tls = {"cert_file": str(good.server_cert), "key_file": str(good.server_key), "client_ca_file": str(good.ca)}
    auth = {"bearer_token_file": str(token_file)}
    app = ProcessorApp(cfg.from_mapping({
        "receiver": {"grpc": {"endpoint": "127.0.0.1:0", "tls": tls, "auth": auth},
                     "http": {"endpoint": "127.0.0.1:0", "tls": {**tls, "min_version": "1.3"}, "auth": auth}},
        "metrics": {"otlp": None, "prometheus": {
            "endpoint": "127.0.0.1:0", "tls": {"cert_file": str(good.server_cert), "key_file": str(good.server_key)},
            "auth": {"basic": {"username": "prometheus", "password_file": str(password)}}}},
        "store": {"backend": "memory"}}), stages=[]).start()
    try:
        yield app, token_file
    finally:
        app.stop(grace=1.0)


def _failures(app: ProcessorApp, reason: str, receiver: str) -> float:
    return app.pipeline.aggregates.value(m.PROCESSOR_AUTH_FAILURES.name, {"ml.reason": reason, "ml.receiver": receiver})


def _grpc(app: ProcessorApp, pki: Pki, cert: bool = True, token: str | None = TOKEN, i: int = 0) -> Any:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes() if cert else None,
        certificate_chain=pki.client_cert.read_bytes() if cert else None)
    with grpc.secure_channel(f"127.0.0.1:{app.grpc_port}", creds) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        return stub.Export(ev.request([prediction_event(f"g{i}")]), metadata=metadata, timeout=10)


def _context(trust: Pki, client: Pki | None, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(trust.ca))
    if client is not None:
        ctx.load_cert_chain(str(client.client_cert), str(client.client_key))
    if version is not None:
        ctx.maximum_version = version
    return ctx


def _post(port: int, ctx: ssl.SSLContext, token: str | None = TOKEN, i: int = 0) -> tuple[int, dict[str, str]]:
    headers = {"Content-Type": "application/x-protobuf", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(f"https://127.0.0.1:{port}/v1/logs", method="POST", headers=headers,
                                 data=ev.request([prediction_event(f"h{i}")]).SerializeToString())
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def _wait(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_grpc_tls_mtls_and_bearer_token(secured: tuple[ProcessorApp, Path], pki: tuple[Pki, Pki]) -> None:
    app, _ = secured
    good, other = pki
    assert _grpc(app, good, i=1).partial_success.rejected_log_records == 0
    for token, reason in ((None, R.MISSING_CREDENTIALS), ("wrong", R.INVALID_CREDENTIALS)):
        with pytest.raises(grpc.RpcError) as err:
            _grpc(app, good, token=token)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _failures(app, reason, "grpc") == 1
    # no client certificate / one from another CA: grpc core refuses the handshake (not visible to Python)
    for client, cert in ((good, False), (other, True)):
        with pytest.raises(grpc.RpcError) as err:
            creds_pki = Pki(good.ca, good.server_cert, good.server_key, client.client_cert, client.client_key)
            _grpc(app, creds_pki, cert=cert)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _grpc(app, good, i=2).partial_success.rejected_log_records == 0
    assert app.pipeline.aggregates.value(m.PREDICTIONS.name) == 2


def test_http_tls_mtls_min_version_and_bearer_token(secured: tuple[ProcessorApp, Path],
                                                     pki: tuple[Pki, Pki]) -> None:
    app, _ = secured
    good, other = pki
    port = app.http_port
    assert port is not None
    assert _post(port, _context(good, good), i=1)[0] == 200
    status, headers = _post(port, _context(good, good), token=None)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert _post(port, _context(good, good), token="wrong")[0] == 401
    assert _failures(app, R.MISSING_CREDENTIALS, "http") == 1
    assert _failures(app, R.INVALID_CREDENTIALS, "http") == 1
    # handshakes that fail on a certificate: no client certificate, one from another CA, a client that does not
    # trust the server's CA (it aborts with an unknown-CA alert)
    for ctx in (_context(good, None), _context(good, other), _context(other, good)):
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _post(port, ctx)
    _wait(lambda: _failures(app, R.TLS_CERTIFICATE, "http") == 3)
    # other handshake failures: TLS 1.2 against min_version 1.3, plaintext on the TLS port
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        _post(port, _context(good, good, ssl.TLSVersion.TLSv1_2))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        s.recv(100)
    _wait(lambda: _failures(app, R.TLS_HANDSHAKE, "http") == 2)
    assert _post(port, _context(good, good), i=2)[0] == 200
    assert app.pipeline.aggregates.value(m.PREDICTIONS.name) == 2


def test_token_file_rotation(secured: tuple[ProcessorApp, Path], pki: tuple[Pki, Pki]) -> None:
    app, token_file = secured
    good, _ = pki
    token_file.write_text("new-token\nnext-token\n")
    time.sleep(1.1)  # token files are checked at most once a second
    assert _post(app.http_port or 0, _context(good, good), token="next-token")[0] == 200
    assert _post(app.http_port or 0, _context(good, good), token=TOKEN)[0] == 401
    assert _grpc(app, good, token="new-token").partial_success.rejected_log_records == 0


def test_scrape_endpoint_tls_and_basic_auth(secured: tuple[ProcessorApp, Path], pki: tuple[Pki, Pki]) -> None:
    app, _ = secured
    good, _ = pki
    url = f"https://127.0.0.1:{app.prometheus_port}/metrics"
    ctx = ssl.create_default_context(cafile=str(good.ca))

    def get(user: str, password: str) -> tuple[int, str]:
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {basic}"})
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("www-authenticate", "")

    assert get("prometheus", "wrong") == (401, 'Basic realm="otel-ml"')
    assert get("nobody", "scrape-pw")[0] == 401
    status, text = get("prometheus", "scrape-pw")
    assert status == 200
    assert 'ml_processor_auth_failures_total{ml_reason="invalid_credentials",ml_receiver="prometheus"' in text


def test_metrics_exported_to_a_collector_over_mtls_with_a_token(pki: tuple[Pki, Pki], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``metrics.otlp.tls`` and ``metrics.otlp.headers``: the processor's own export reaches a receiver that
    requires a client certificate and a bearer token (the token from the environment)."""
    from concurrent import futures

    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

    good, _ = pki
    seen: list[tuple[str, ...]] = []

    class Sink(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            seen.append(tuple(v for k, v in context.invocation_metadata() if k == "authorization"))
            return ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Sink(), server)  # type: ignore[no-untyped-call]
    creds = grpc.ssl_server_credentials([(good.server_key.read_bytes(), good.server_cert.read_bytes())],
                                        root_certificates=good.ca.read_bytes(), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    monkeypatch.setenv("OTEL_ML_TEST_COLLECTOR_TOKEN", "collector-token")
    config = tmp_path / "processor.yaml"
    config.write_text(f"""
receiver: {{grpc: null, http: null}}
store: {{backend: memory}}
metrics:
  otlp:
    endpoint: https://localhost:{port}
    interval: 200ms
    tls: {{ca_file: {good.ca}, cert_file: {good.client_cert}, key_file: {good.client_key}}}
    headers: {{authorization: "Bearer ${{env:OTEL_ML_TEST_COLLECTOR_TOKEN}}"}}
""")
    app = ProcessorApp(cfg.load(config), stages=[]).start()
    try:
        _wait(lambda: bool(seen), timeout=20)
        assert seen[0] == ("Bearer collector-token",)
        assert app.pipeline.aggregates.value(m.PROCESSOR_EXPORT_FAILURES.name) == 0
    finally:
        app.stop(grace=1.0)
        server.stop(0)


@pytest.mark.parametrize("receiver", ["grpc", "http"])
def test_unloadable_tls_files_fail_the_start_with_exit_1(tmp_path: Path, receiver: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from otel_ml.processor.cli import main

    other = "http" if receiver == "grpc" else "grpc"
    path = tmp_path / "p.yaml"
    path.write_text(f"receiver: {{{receiver}: {{endpoint: '127.0.0.1:0', tls: {{cert_file: {path}, "
                    f"key_file: {path}}}}}, {other}: null}}\nstore: {{backend: memory}}\nmetrics: {{otlp: null}}\n")
    assert main(["--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "cannot start" in err and "cannot load the" in err
