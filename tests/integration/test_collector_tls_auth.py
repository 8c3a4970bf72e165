"""The real collector sends to the processor over mTLS with a bearer token (``collector-config/processor-tls.yaml``
over ``gateway.yaml``: the ``bearertokenauth`` extension and the exporter's ``tls`` settings); three misconfigured
collectors send to the same processor at the same time: a wrong token, no token, and a wrong CA.

The good sender's data arrives exactly (Prometheus equals the scikit-learn truth); the processor refuses the wrong
and missing tokens with UNAUTHENTICATED and counts them (``ml_processor_auth_failures_total{ml_reason}``); the
wrong-CA collector never completes a handshake (grpc does handshakes in its core, out of the processor's sight: the
sender logs them and keeps the data in its persistent queue, retrying); none of the bad senders' records reaches the
metrics.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_ml.semconv import metrics as m
from otel_ml.semconv import prom_name
from otel_ml.semconv.attributes import AuthFailureReason
from tests.integration.collector_stack import GATEWAY, ML_EXPORTER, PROCESSOR_TLS, App, Collector, Stack, wait_for
from tests.integration.collector_workload import assert_matches_truth, make_workload, model_sum
from tests.support.certs import make_pki

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_collector_over_mtls_with_token_and_three_bad_senders(tmp_path: Path) -> None:
    good, other = make_pki(tmp_path, "ca"), make_pki(tmp_path, "other")
    (tmp_path / "token").write_text("the-right-token\n")
    (tmp_path / "wrong-token").write_text("a-wrong-token\n")
    tls = {"cert_file": str(good.server_cert), "key_file": str(good.server_key), "client_ca_file": str(good.ca)}
    auth = {"bearer_token_file": str(tmp_path / "token")}
    client = {"OTEL_ML_PROCESSOR_CLIENT_CERT_FILE": str(good.client_cert),
              "OTEL_ML_PROCESSOR_CLIENT_KEY_FILE": str(good.client_key)}
    env = {"OTEL_ML_PROCESSOR_CA_FILE": str(good.ca), "OTEL_ML_PROCESSOR_TOKEN_FILE": str(tmp_path / "token"),
           **client}
    w = make_workload(400, seed=23)
    bad = make_workload(300, model="intruder", seed=29)
    with Stack(tmp_path, configs=(GATEWAY, PROCESSOR_TLS), collector_env=env,
               processor_grpc={"tls": tls, "auth": auth}) as stack:
        processor = stack.processors[0].endpoint
        common = {"OTEL_ML_PROCESSOR_ENDPOINT": processor, "OTEL_ML_RETRY_INITIAL_INTERVAL": "200ms",
                  "OTEL_ML_RETRY_MAX_INTERVAL": "1s"}
        no_token = (GATEWAY, "yaml:exporters::otlp_grpc/otel_ml::tls::insecure: false",
                    f"yaml:exporters::otlp_grpc/otel_ml::tls::ca_file: {good.ca}",
                    f"yaml:exporters::otlp_grpc/otel_ml::tls::cert_file: {good.client_cert}",
                    f"yaml:exporters::otlp_grpc/otel_ml::tls::key_file: {good.client_key}")
        senders = {
            "wrong-token": Collector(tmp_path, (GATEWAY, PROCESSOR_TLS), name="otelcol-wrong-token",
                                     env={**common, **env,
                                          "OTEL_ML_PROCESSOR_TOKEN_FILE": str(tmp_path / "wrong-token")}),
            "no-token": Collector(tmp_path, no_token, name="otelcol-no-token", env=common),
            "wrong-ca": Collector(tmp_path, (GATEWAY, PROCESSOR_TLS), name="otelcol-wrong-ca",
                                  env={**common, **env, "OTEL_ML_PROCESSOR_CA_FILE": str(other.ca)}),
        }
        apps = []
        try:
            for col in senders.values():
                col.start()
                apps.append(App(col.grpc_endpoint))
            for app in apps:
                app.send_all(bad.predictions() + bad.labels(), batch=100)
            stack.send(w.predictions() + w.labels(), batch=100)
            assert_matches_truth(stack, w, w.truth())
            failures = prom_name(m.PROCESSOR_AUTH_FAILURES)
            for reason in (AuthFailureReason.INVALID_CREDENTIALS, AuthFailureReason.MISSING_CREDENTIALS):
                stack.wait_value(f'sum({failures}{{ml_reason="{reason}", ml_receiver="grpc"}}) > bool 0', 1.0)
            # the wrong-CA sender retries (a transport error is not permanent): its data stays queued
            wrong_ca = senders["wrong-ca"]
            wait_for(lambda: wrong_ca.queue_size(ML_EXPORTER) > 0 and "certificate" in wrong_ca.process.log(200_000),
                     timeout=60, what="the wrong-CA sender's handshakes failing, its data queued")
            assert wrong_ca.exporter_sent(ML_EXPORTER) == 0
            for name in ("wrong-token", "no-token"):  # UNAUTHENTICATED is permanent: dropped by the sender, counted
                wait_for(lambda n=name: _send_failed(senders[n]) > 0, timeout=60, what=f"{name} send failures")
            assert stack.value(model_sum(m.PREDICTIONS, "intruder")) == 0
            print(f"\nauth failures: {stack.prometheus.query(f'sum by (ml_reason) ({failures})')}; wrong-CA sender "
                  f"queue: {wrong_ca.queue_size(ML_EXPORTER):.0f} requests")
        finally:
            for app in apps:
                app.close()
            for col in senders.values():
                col.stop()


def _send_failed(col: Collector) -> float:
    from tests.integration.collector_stack import sample_sum

    return sample_sum(col.telemetry(), "otelcol_exporter_send_failed_log_records", exporter=ML_EXPORTER)
