"""The wheel, installed as a user would: sdist -> wheel, a clean virtualenv with ``otel-ml[processor]``, then
``otel-ml generate --out`` with the user's own thresholds, the processor with its C decoder, and the same wheel built
without a C compiler (a clear warning at build and at start-up; the processor still works).

One integration test, bounded: it reuses pip's cache (about 2-3 minutes on the 2-core machine, most of it the
install of the processor extra). Runs from a git checkout (the sources are the tracked files).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.support.procs import ManagedProcess, free_port, http_ok, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
USER_CONFIG = """\
runbook_url: https://runbooks.example.com/otel-ml
grafana_url: https://grafana.example.com
thresholds:
  defaults: {}
  models:
    churn: {quality_min_effect: 0.125}
"""


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, **kwargs)  # type: ignore[call-overload]


def _sources(tmp: Path) -> Path:
    """The files of the checkout that git tracks or would (no build/, no venvs, no in-place extension)."""
    files = _run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    assert files.returncode == 0, files.stderr
    src = tmp / "src"
    for name in filter(None, files.stdout.split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    return src


def _processor(venv: Path, tmp: Path, name: str) -> tuple[ManagedProcess, int, int]:
    http, prom = free_port(), free_port()
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "receiver": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{http}"}},
        "store": {"backend": "sqlite", "path": str(tmp / f"{name}.db")},
        "metrics": {"otlp": None, "prometheus": {"endpoint": f"127.0.0.1:{prom}"}}}))
    proc = ManagedProcess(name, [str(venv / "bin" / "otel-ml"), "processor", "--config", str(config)], tmp)
    proc.start().wait_ready(lambda: http_ok(f"http://127.0.0.1:{prom}/metrics"), timeout=120)
    return proc, http, prom


def _send_and_count(venv: Path, http: int, prom: int, n: int) -> None:
    """Predictions from the installed SDK to the installed processor, read back from its /metrics."""
    script = textwrap.dedent(f"""
        import otel_ml
        otel_ml.configure(endpoint="http://127.0.0.1:{http}", client_metrics=False)
        monitor = otel_ml.ModelMonitor("wheel", task="binary", classes=["no", "yes"])
        for i in range({n}):
            monitor.log_prediction("yes" if i % 2 else "no", scores=0.5)
        assert otel_ml.force_flush(30)
    """)
    sent = _run([str(venv / "bin" / "python"), "-c", script])
    assert sent.returncode == 0, sent.stderr

    def total() -> float:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("ml_predictions_total{") and 'ml_model_name="wheel"' in line)

    wait_until(lambda: total() == n, timeout=30, what=f"{n} predictions counted by the installed processor")


def test_wheel_in_a_clean_virtualenv(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/install-system-deps.sh"
    src = _sources(tmp_path)
    dist = tmp_path / "dist"
    built = _run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)])  # sdist, then wheel from it
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    installed = _run([*pip, f"{wheel}[processor]"])
    assert installed.returncode == 0, installed.stderr[-3000:]

    # otel-ml generate, from the install (no checkout: cwd elsewhere), with the user's thresholds
    user_config = tmp_path / "my-thresholds.yaml"
    user_config.write_text(USER_CONFIG)
    out = tmp_path / "generated"
    otel_ml_cli = str(venv / "bin" / "otel-ml")
    generated = _run([otel_ml_cli, "generate", "--out", str(out), "--config", str(user_config)], cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    rules = out / "alerts" / "otel-ml.rules.yaml"
    checked = _run([promtool, "check", "rules", str(rules)])
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    rule_text = rules.read_text()
    assert "vector(0.125)" in rule_text and "https://runbooks.example.com/otel-ml" in rule_text
    dashboards = sorted(p.name for p in (out / "dashboards").glob("*.json"))
    assert dashboards == ["fleet-overview.json", "model-overview.json", "self-monitoring.json"]
    for path in (out / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        assert board["uid"].startswith("otel-ml") and (board.get("panels") or board.get("rows"))
    provisioning = out / "grafana" / "provisioning"
    grafana_rules = yaml.safe_load((provisioning / "alerting" / "otel-ml-rules.yaml").read_text())
    assert grafana_rules["groups"] and "https://grafana.example.com" in json.dumps(grafana_rules)
    for part in ("alerting/otel-ml-contact-points.yaml", "dashboards/otel-ml.yaml", "datasources/prometheus.yaml"):
        assert yaml.safe_load((provisioning / part).read_text())["apiVersion"] == 1
    refused = _run([otel_ml_cli, "generate"], cwd=tmp_path)  # nothing to regenerate in place: says what to do
    assert refused.returncode == 2 and "--out DIR" in refused.stderr

    # the installed processor decodes with its C extension
    proc, http, prom = _processor(venv, tmp_path, "processor-c")
    try:
        assert "decoding with the C fast-path decoder" in proc.log()
        _send_and_count(venv, http, prom, 40)
    finally:
        proc.stop()

    # the same sources without a C compiler: a clear warning when building, a pure-Python install that works
    nocc = tmp_path / "dist-nocc"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(nocc), str(src)],
                 env={**os.environ, "CC": "/bin/false"})
    assert built.returncode == 0, built.stderr[-3000:]
    (pure,) = nocc.glob("*.whl")
    reinstalled = _run([*pip, "--force-reinstall", "--no-deps", str(pure)])
    assert reinstalled.returncode == 0, reinstalled.stderr
    proc, http, prom = _processor(venv, tmp_path, "processor-pure")
    try:
        log = proc.log()
        assert "WARNING" in log and "the C extension is not built" in log and "C compiler" in log, log
        _send_and_count(venv, http, prom, 25)
    finally:
        proc.stop()
