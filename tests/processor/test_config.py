"""Config: defaults valid, errors name the key with a valid example, README table up to date, CLI exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_ml.processor import config as cfg
from otel_ml.processor.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_example_are_valid() -> None:
    default = cfg.from_mapping({})
    assert default.store.label_window == cfg.DEFAULT_LABEL_WINDOW_S == 7 * 86400
    assert default.reference is None and default.metrics.prometheus_endpoint is None
    example = cfg.from_mapping(yaml.safe_load(cfg.EXAMPLE))
    assert example.metrics.ranking_k == (1, 5, 10)
    assert example.resolved_instance_id() == "replica-a"
    assert cfg.from_mapping({}).resolved_instance_id() == cfg.from_mapping({}).resolved_instance_id()


def test_secure_defaults() -> None:
    default = cfg.from_mapping({})
    assert default.receiver.grpc_endpoint == "localhost:4317" and default.receiver.http_endpoint == "localhost:4318"
    assert default.receiver.grpc is not None and default.receiver.grpc.tls is None
    assert default.shutdown_grace == 20.0
    assert default.memory_limiter is not None
    assert default.memory_limiter.limits(10 * 2**30) == (6 * 2**30, 8 * 2**30)  # 80 % hard, 20 % of it spike
    mib = cfg.from_mapping({"memory_limiter": {"limit_mib": 1000, "spike_limit_mib": 200}}).memory_limiter
    assert mib is not None and mib.limits(10 * 2**30) == (800 * 2**20, 1000 * 2**20)
    assert cfg.from_mapping({"memory_limiter": None}).memory_limiter is None
    assert cfg.from_mapping({"receiver": {"grpc": {"endpoint": "[::1]:4317"}}}).receiver.grpc_endpoint == "[::1]:4317"


def test_design_doc_example_is_valid() -> None:
    text = (ROOT / "docs" / "design.md").read_text()
    block = text.split("## Processor configuration", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    config = cfg.from_mapping(yaml.safe_load(block))
    assert config.reference is not None and config.reference.reload_interval == 30


@pytest.mark.parametrize(("raw", "key", "fragment"), [
    ({"store": {"backend": "redis"}}, "store.backend", "sqlite, postgres, memory"),
    ({"store": {"label_window": "a week"}}, "store.label_window", "duration"),
    ({"store": {"label_window": -5}}, "store.label_window", "positive"),
    ({"store": {"max_pending": 0}}, "store.max_pending", "integer >= 1"),
    ({"store": {"lock_timeout": "forever"}}, "store.lock_timeout", "duration"),
    ({"store": {"lock_timeout": 0}}, "store.lock_timeout", "positive"),
    ({"store": {"pth": "x"}}, "store.pth", "unknown key"),
    ({"receiver": {"grpc": {"endpoint": "localhost"}}}, "receiver.grpc.endpoint", "host:port"),
    ({"receiver": {"max_inflight_requests": True}}, "receiver.max_inflight_requests", "integer"),
    ({"metrics": {"ranking_k": [0, 5]}}, "metrics.ranking_k", "positive integers"),
    ({"metrics": {"otlp": {"endpoint": "127.0.0.1:4317"}}}, "metrics.otlp.endpoint", "http(s)://"),
    ({"metrics": {"otlp": {"protocol": "thrift"}}}, "metrics.otlp.protocol", "grpc"),
    ({"metrics": {"prometheus": {"endpoint": 9464}}}, "metrics.prometheus.endpoint", "host:port"),
    ({"metrics": "yes"}, "metrics", "mapping"),
    ({"stages": ["nocolon"]}, "stages", "module:factory"),
    ({"instance": "x"}, "instance", "unknown key"),
    ({"receiver": {"grpc": {"endpoint": "0.0.0.0:99999"}}}, "receiver.grpc.endpoint", "host:port"),
    ({"receiver": {"http": {"max_connections": 0}}}, "receiver.http.max_connections", "integer"),
    ({"receiver": {"http": {"read_timeout": "soon"}}}, "receiver.http.read_timeout", "duration"),
    ({"receiver": {"http": {"keepalive": 1}}}, "receiver.http.keepalive", "unknown key"),
    ({"receiver": {"grpc": {"tls": {"cert_file": "/nonexistent.crt", "key_file": "/x.key"}}}},
     "receiver.grpc.tls.cert_file", "does not exist"),
    ({"receiver": {"grpc": {"tls": {"key_file": "/x.key"}}}}, "receiver.grpc.tls.cert_file", "required"),
    ({"receiver": {"http": {"tls": {"cert_file": "README.md", "key_file": "README.md", "min_version": "1.1"}}}},
     "receiver.http.tls.min_version", "1.2, 1.3"),
    ({"receiver": {"grpc": {"tls": {"cert_file": "README.md", "key_file": "README.md", "min_version": "1.3"}}}},
     "receiver.grpc.tls.min_version", "grpcio"),
    ({"receiver": {"grpc": {"auth": {}}}}, "receiver.grpc.auth", "exactly one"),
    ({"receiver": {"grpc": {"auth": {"bearer_token": " padded "}}}}, "receiver.grpc.auth.bearer_token", "spaces"),
    ({"receiver": {"http": {"auth": {"basic": {"username": "u", "password": "p"}}}}}, "receiver.http.auth.basic",
     "unknown key"),
    ({"metrics": {"prometheus": {"auth": {"basic": {"username": "u"}}}}}, "metrics.prometheus.auth.basic",
     "exactly one"),
    ({"memory_limiter": {"limit_mib": 512, "limit_percentage": 50}}, "memory_limiter.limit_percentage", "not both"),
    ({"memory_limiter": {"limit_mib": 512, "spike_limit_mib": 600}}, "memory_limiter.spike_limit_mib", "below"),
    ({"memory_limiter": {"limit_percentage": 120}}, "memory_limiter.limit_percentage", "<= 100"),
    ({"shutdown_grace": "0s"}, "shutdown_grace", "positive"),
    ({"metrics": {"otlp": {"endpoint": "http://c:4317", "tls": {"ca_file": "README.md"}}}}, "metrics.otlp.tls",
     "https"),
    ({"metrics": {"otlp": {"endpoint": "https://c:4317", "tls": {"cert_file": "README.md"}}}}, "metrics.otlp.tls",
     "together"),
    ({"metrics": {"otlp": {"headers": {"bad header": "x"}}}}, "metrics.otlp.headers", "header names"),
    ({"limits": {"prediction_id_bytes": 8}}, "limits.prediction_id_bytes", ">= 16"),
    ({"limits": {"segments_per_record": True}}, "limits.segments_per_record", "integer"),
    ({"limits": {"class_bytes": 1 << 25}}, "limits.class_bytes", "at most"),
    ({"limits": {"id_bytes": 10}}, "limits.id_bytes", "unknown key"),
    ({"metrics": {"cardinality_idle": "30s"}}, "metrics.cardinality_idle", "at least 60s"),
    ({"metrics": {"cardinality_admission": 0}}, "metrics.cardinality_admission", ">= 1"),
    ({"metrics": {"series_limit": 10}}, "metrics.series_limit", ">= 100"),
])
def test_invalid_configs_name_the_key_and_show_an_example(raw: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(cfg.ConfigError) as err:
        cfg.from_mapping(raw)
    msg = str(err.value)
    assert f"`{key}`" in msg and fragment in msg and "valid example" in msg
    assert err.value.key == key


def test_readme_table_is_up_to_date() -> None:
    readme = (ROOT / "README.md").read_text()
    assert cfg.readme_block() in readme, (
        "README processor-config table is stale: run "
        "python -c 'from otel_ml.processor.config import write_readme; write_readme()'")
    for key in cfg.CONFIG_KEYS:
        assert f"`{key.key}`" in readme


def test_cli_exit_2_on_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("store: {backend: redis}\n")
    assert main(["--config", str(bad)]) == 2
    assert "store.backend" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    bad.write_text("store: [unclosed\n")
    assert main(["--config", str(bad)]) == 2
    bad.write_text("reference: {directory: /nowhere}\nstages: ['no_such_module_x:create']\nreceiver: {grpc: null, "
                   "http: null}\nmetrics: {otlp: null}\nstore: {backend: memory}\n")
    assert main(["--config", str(bad)]) == 2


def test_python_m_entry_point_checks_config(tmp_path: Path) -> None:
    good = tmp_path / "p.yaml"
    good.write_text(cfg.EXAMPLE)
    out = subprocess.run([sys.executable, "-m", "otel_ml.processor", "--config", str(good), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    good.write_text("metrics: {cardinality_limit: -1}\n")
    out = subprocess.run([sys.executable, "-m", "otel_ml", "processor", "--config", str(good)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "metrics.cardinality_limit" in out.stderr
