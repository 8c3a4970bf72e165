"""Every shipped collector config is loaded by the real OCB-built collector: ``otelcol validate`` and a real run.

Also pins the OCB manifest to exactly the components the configs use, the routing condition to exactly the
otel-ml event names, and the build script's cache.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_ml.semconv import ML_EVENT_NAMES
from tests.integration.collector_stack import (
    ADD_OTEL_ML,
    CONFIG_DIR,
    GATEWAY,
    SHIPPED_CONFIGS,
    Collector,
    sample_sum,
    scrape,
    wait_for,
)
from tests.support.certs import make_pki
from tests.support.procs import ROOT, collector_binary, free_port

pytestmark = pytest.mark.integration

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
CONFIG_FILES = sorted({p for files in SHIPPED_CONFIGS.values() for p in files})
ENV_REF = re.compile(r"\$\{env:([A-Z0-9_]+)")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _components_built() -> dict[str, dict[str, str]]:
    """``otelcol components``: kind -> component type -> module and version."""
    out = subprocess.run([collector_binary(), "components"], check=True, capture_output=True, text=True).stdout
    data = yaml.safe_load(out)
    return {kind: {c["name"]: c["module"] for c in data.get(kind) or []} for kind in KINDS}


def _run_env(tmp_path: Path) -> dict[str, str]:
    """Addresses for a run with no processor listening (the persistent queue simply holds the data)."""
    pki = make_pki(tmp_path)
    (tmp_path / "token").write_text("a-token\n")
    return {
        "OTEL_ML_PROCESSOR_CA_FILE": str(pki.ca),
        "OTEL_ML_PROCESSOR_TOKEN_FILE": str(tmp_path / "token"),
        "OTEL_ML_PROCESSOR_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTEL_ML_PROCESSOR_REPLICAS": f"[127.0.0.1:{free_port()}, 127.0.0.1:{free_port()}]",
        "OTEL_ML_PROCESSOR_DNS_NAME": "127.0.0.1",
        "OTEL_ML_PROCESSOR_PORT": str(free_port()),
        "OTEL_ML_DNS_INTERVAL": "1s",
        "OTEL_ML_LOGS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
    }


@pytest.mark.parametrize("name", sorted(SHIPPED_CONFIGS))
def test_otelcol_validate(name: str, tmp_path: Path) -> None:
    args = [collector_binary(), "validate", *(f"--config={p}" for p in SHIPPED_CONFIGS[name])]
    env_out = subprocess.run(args, capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "OTEL_ML_QUEUE_DIR": str(tmp_path / "q")})
    assert env_out.returncode == 0, env_out.stdout + env_out.stderr


@pytest.mark.parametrize("name", sorted(SHIPPED_CONFIGS))
def test_real_run(name: str, tmp_path: Path) -> None:
    """The collector starts with the file(s), reports healthy, serves its metrics; host metrics reach Prometheus
    format on the ``prometheus`` exporter when the config has the ``host_metrics`` receiver."""
    col = Collector(tmp_path, SHIPPED_CONFIGS[name], env=_run_env(tmp_path)).start()
    try:
        assert sample_sum(col.telemetry(), "otelcol_process_uptime") > 0
        if any("host_metrics" in (_load(p).get("receivers") or {}) for p in SHIPPED_CONFIGS[name]):
            wait_for(lambda: any(n.startswith("system_cpu_time_seconds")
                                 for n, _, _ in scrape(f"http://{col.prometheus_target}/metrics")),
                     timeout=30, what="host metrics on the prometheus exporter")
        assert col.process.alive()
    finally:
        assert col.stop() == 0, col.process.log()
    assert " error\t" not in col.process.log(100_000), col.process.log()


def test_manifest_lists_exactly_the_components_the_configs_use() -> None:
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for path in CONFIG_FILES:
        cfg = _load(path)
        for kind in KINDS:
            used[kind] |= {cid.split("/")[0] for cid in cfg.get(kind) or {}}
    built = _components_built()
    assert {k: set(v) for k, v in built.items()} == used


def test_manifest_pins_one_collector_version() -> None:
    manifest = _load(CONFIG_DIR / "builder-config.yaml")
    versions = {}
    for kind in (*KINDS, "providers"):
        for entry in manifest.get(kind) or []:
            module, version = entry["gomod"].split()
            versions[module] = version
    routing = "github.com/open-telemetry/opentelemetry-collector-contrib/connector/routingconnector"
    # The one documented exception: later routingconnector sources are refused by the Go module proxy.
    assert versions.pop(routing) == "v0.157.0"
    assert any(r.startswith(f"{routing} => ") for r in manifest["replaces"])
    providers = {m for m in versions if "/confmap/provider/" in m}
    assert {versions[m] for m in providers} == {"v1.65.0"}
    assert {v for m, v in versions.items() if m not in providers} == {"v0.159.0"}
    assert subprocess.run([collector_binary(), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip().endswith("0.159.0-otelml")


def test_routing_condition_is_exactly_the_otel_ml_events() -> None:
    for path in (GATEWAY, ADD_OTEL_ML):
        table = _load(path)["connectors"]["routing/otel_ml"]["table"]
        assert len(table) == 1
        condition = table[0]["condition"]
        names = re.findall(r'log\.event_name == "([^"]+)"', condition)
        assert " or ".join(f'log.event_name == "{n}"' for n in names) == condition
        assert set(names) == set(ML_EVENT_NAMES)


def test_every_environment_variable_is_documented() -> None:
    readme = (CONFIG_DIR / "README.md").read_text()
    names = {n for p in CONFIG_FILES for n in ENV_REF.findall(p.read_text())}
    assert names, "configs read no environment variables?"
    assert sorted(n for n in names if f"`{n}`" not in readme) == []


def test_build_script_is_cached_and_idempotent() -> None:
    script = ROOT / "scripts" / "build-collector.sh"
    first = subprocess.run([script], check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    start = time.monotonic()
    second = subprocess.run([script], check=True, capture_output=True, text=True)
    assert second.stdout.splitlines()[-1] == first
    assert "building" not in second.stderr
    assert time.monotonic() - start < 10
