"""docker-compose.yml and Dockerfile, checked without Docker.

* the compose file validates against the Compose Specification's JSON schema (vendored in ``schema/``);
* every file or folder it bind-mounts exists, and every image is pinned to a version (no ``latest``);
* the mounted configs are loaded by the real tools the integration tests use (``promtool``, ``amtool``, the
  OCB-built collector, the processor's config loader), with the container paths mapped back to the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = ROOT / "docker-compose.yml"
SCHEMA_PATH = Path(__file__).parent / "schema" / "compose-spec.json"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_PATH.read_text())
    return data


def _bind_mounts() -> list[tuple[str, Path, str]]:
    """(service, host path, container path) of every bind mount (``./...`` short syntax)."""
    out = []
    for name, svc in _compose()["services"].items():
        for vol in svc.get("volumes", []):
            parts = vol.split(":")
            if parts[0].startswith(("./", "../", "/")):
                out.append((name, (ROOT / parts[0]).resolve(), parts[1]))
    return out


def _host_path(service: str, container_path: str) -> Path:
    """The repository path mounted at ``container_path`` (or inside a mounted folder) in ``service``."""
    for svc, host, target in _bind_mounts():
        if svc != service:
            continue
        if container_path == target:
            return host
        if container_path.startswith(target.rstrip("/") + "/"):
            return host / container_path[len(target.rstrip("/")) + 1:]
    raise AssertionError(f"{container_path} is not bind-mounted in service {service}")


def test_compose_file_matches_the_compose_specification_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_validation_can_fail() -> None:
    """The vendored schema really constrains services (guards against an empty or permissive schema)."""
    bad = _compose()
    bad["services"]["collector"]["ports"] = {"not": "a list"}
    bad["services"]["grafana"]["no_such_key"] = 1
    errors = list(jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).iter_errors(bad))
    assert len(errors) >= 2


def test_every_bind_mount_exists() -> None:
    mounts = _bind_mounts()
    assert len(mounts) >= 6
    missing = [f"{svc}: {host}" for svc, host, _ in mounts if not host.exists()]
    assert not missing, f"mounted but missing: {missing}"


def test_images_are_pinned() -> None:
    for name, svc in _compose()["services"].items():
        image = svc.get("image")
        assert image, f"service {name} has no image name"
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned to a tag"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: tag {tag!r} is not a version"
    assert _compose()["services"]["collector"]["image"] == "otel/opentelemetry-collector-contrib:0.159.0"


def test_dockerfile_base_images_are_pinned_and_it_installs_the_wheel_with_the_processor_extra() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(bases) == 2 and re.fullmatch(r"python:3\.11\.\d+-bookworm", bases[0]), bases  # build stage: gcc
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[1])
    assert bases[1].split("-")[0] == bases[0].split("-")[0]  # the same Python in both stages
    assert "pip wheel" in text and "_fastdecode" in text  # the build fails when the C extension did not build
    assert '.whl)[processor]"' in text
    assert 'ENTRYPOINT ["otel-ml"]' in text
    for copied in re.findall(r"^COPY\s+(?!--from)(.+?)\s+\S+$", text, re.MULTILINE):
        for src in copied.split():
            assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_processor_config_is_valid() -> None:
    from otel_ml.processor import config

    cfg = config.load(_host_path("otel-ml-processor", "/etc/otel-ml/processor.yaml"))
    assert cfg.reference is not None, "the compose processor loads the references the demo traffic writes"
    assert cfg.metrics.otlp is not None and "collector:4317" in cfg.metrics.otlp.endpoint
    assert cfg.receiver.grpc_endpoint is not None and cfg.receiver.grpc_endpoint.endswith(":4317")


def test_collector_sends_to_the_processor_service_and_prometheus_scrapes_the_collector() -> None:
    services = _compose()["services"]
    env = services["collector"]["environment"]
    host, _, port = env["OTEL_ML_PROCESSOR_ENDPOINT"].partition(":")
    assert host in services and port == "4317"
    prom = yaml.safe_load(_host_path("prometheus", "/etc/prometheus/prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    gateway = yaml.safe_load(_host_path("collector", "/etc/otelcol/gateway.yaml").read_text())
    prom_port = re.search(r":-?[\d.]*:(\d+)\}?$", gateway["exporters"]["prometheus"]["endpoint"])
    assert prom_port and f"collector:{prom_port.group(1)}" in targets


def _prometheus_config_on_host(tmp_path: Path) -> Path:
    """prometheus.yml with its rule globs mapped from container paths to the repository."""
    cfg = yaml.safe_load(_host_path("prometheus", "/etc/prometheus/prometheus.yml").read_text())
    rules = []
    for pattern in cfg.get("rule_files", []):
        folder, _, glob = pattern.rpartition("/")
        matched = [m for m in _bind_mounts() if m[0] == "prometheus" and m[2].startswith(folder + "/")]
        assert matched, f"no rule file mounted for {pattern}"
        rules += [str(host) for _, host, target in matched if Path(target).match(glob)]
    assert rules, "no rule files"
    cfg["rule_files"] = rules
    out = tmp_path / "prometheus.yml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def test_prometheus_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    from tests.support.procs import require_binary

    out = subprocess.run([require_binary("promtool"), "check", "config", str(_prometheus_config_on_host(tmp_path))],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rules found" in out.stdout


def test_alertmanager_config_passes_amtool() -> None:
    from tests.support.procs import require_binary

    path = _host_path("alertmanager", "/etc/alertmanager/alertmanager.yml")
    out = subprocess.run([require_binary("amtool"), "check-config", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_grafana_provisioning_points_at_the_mounted_dashboards_and_prometheus() -> None:
    provisioning = _host_path("grafana", "/etc/grafana/provisioning")
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
                 for p in yaml.safe_load(f.read_text()).get("providers", [])]
    assert providers, "no dashboard provider"
    for provider in providers:
        folder = _host_path("grafana", provider["options"]["path"])
        assert sorted(folder.glob("*.json")), f"no dashboard JSON in {folder}"
    datasources = [d for f in sorted((provisioning / "datasources").glob("*.y*ml"))
                   for d in yaml.safe_load(f.read_text()).get("datasources", [])]
    assert any(d["type"] == "prometheus" and d["url"].rstrip("/") == "http://prometheus:9090" for d in datasources)


@pytest.mark.integration
def test_collector_config_validates_with_the_compose_environment() -> None:
    from tests.support.procs import collector_binary

    env_vars = {k: str(v) for k, v in _compose()["services"]["collector"]["environment"].items()}
    gateway = _host_path("collector", "/etc/otelcol/gateway.yaml")
    out = subprocess.run([collector_binary(), "validate", f"--config={gateway}"], capture_output=True, text=True,
                         env={**os.environ, **env_vars})
    assert out.returncode == 0, out.stdout + out.stderr


def test_documented_dashboard_urls_exist() -> None:
    """The README's Grafana URLs point at the published port and at dashboards that are provisioned."""
    readme = (ROOT / "README.md").read_text()
    grafana_port = _compose()["services"]["grafana"]["ports"][0].split(":")[0]
    urls = re.findall(rf"http://localhost:{grafana_port}/d/([\w-]+)", readme)
    assert len(urls) >= 3, "the README documents the dashboards' URLs"
    uids = {json.loads(p.read_text())["uid"] for p in (ROOT / "dashboards" / "generated").glob("*.json")}
    assert set(urls) <= uids, f"documented {sorted(set(urls))}, provisioned {sorted(uids)}"
