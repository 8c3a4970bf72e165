"""Real processes on loopback for integration tests: free ports, readiness waits, clean teardown.

Every long-running part of the stack (collector, otel-ml processor, Prometheus, Alertmanager) is started as a real
process by the helpers here; there are no mocks. Logs go to files in the test's tmp dir and are printed when a
readiness wait fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProcessExited(RuntimeError):
    """A process that a readiness wait depends on has exited: waiting longer is pointless."""


def wait_until(check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1,
               what: str = "condition") -> None:
    """Poll ``check`` until it returns true; raise ``TimeoutError`` naming ``what`` otherwise.

    Exceptions from ``check`` count as "not yet", except :class:`ProcessExited`, which ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except ProcessExited:
            raise
        except Exception as exc:  # readiness probes fail until the process is up
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def proc_status(pid: int | str, key: str) -> int:
    """A byte figure of ``/proc/<pid>/status``: ``key`` e.g. ``"VmRSS:"`` or ``"VmHWM:"``; ``pid`` may be "self"."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_STARTED: list[ManagedProcess] = []


def stop_all_started() -> list[str]:
    """Stop every process started through :class:`ManagedProcess` that is still alive; returns their names.

    Called at the end of the test session (tests/conftest.py), so a test that fails between start and teardown
    never leaks a collector, processor or Prometheus into later tests or later sessions.
    """
    leaked = [p.name for p in _STARTED if p.alive()]
    for p in _STARTED:
        if p.alive():
            p.stop(timeout=5)
    _STARTED.clear()
    return leaked


class ManagedProcess:
    """A child process with its output in a log file; terminated (then killed) on ``stop``."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        """Start the process (appending to its log, so restarts keep earlier output)."""
        log = open(self.log_path, "ab")  # closed right after Popen: the child keeps its own descriptor
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, start_new_session=True)
        log.close()
        _STARTED.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_ready(self, check: Callable[[], bool], timeout: float = 60.0) -> ManagedProcess:
        """Wait for ``check``; fail with the process log if it exits or never gets ready."""
        def probe() -> bool:
            if not self.alive():
                raise ProcessExited(f"{self.name} exited with {self.proc.returncode if self.proc else None}")
            return check()
        try:
            wait_until(probe, timeout=timeout, what=f"{self.name} readiness")
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}\n--- {self.name} log ---\n{self.log()}") from exc
        return self

    def kill9(self) -> None:
        """``kill -9``: no cleanup, no flush."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


# --- binaries ------------------------------------------------------------------------------------------------------
def collector_binary() -> str:
    """Path of the OCB-built collector: ``$OTEL_ML_OTELCOL`` or the cached build (built if missing)."""
    path = os.environ.get("OTEL_ML_OTELCOL")
    if path and os.access(path, os.X_OK):
        return path
    out = subprocess.run([str(ROOT / "scripts" / "build-collector.sh")], check=True, capture_output=True, text=True)
    path = out.stdout.strip().splitlines()[-1]
    os.environ["OTEL_ML_OTELCOL"] = path
    return path


def require_binary(name: str) -> str:
    """Path of a system binary the test command installs (prometheus, alertmanager, promtool, amtool)."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: run ./scripts/test.sh, which installs it")
    return path


# --- Prometheus ----------------------------------------------------------------------------------------------------
class Prometheus:
    """A real Prometheus (Debian package) on a free port, with an HTTP API client."""

    def __init__(self, tmp: Path, scrape_targets: dict[str, list[str]], rule_files: Sequence[Path] = (),
                 alertmanager: str | None = None, scrape_interval: str = "1s", eval_interval: str = "1s",
                 extra_flags: Sequence[str] = (), honor_labels: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tmp / f"prometheus-{self.port}"
        self.dir.mkdir(parents=True)
        cfg: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": eval_interval},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}],
                 **({"honor_labels": True} if honor_labels else {})}  # keep exported job/instance (collector)
                for job, targets in scrape_targets.items()
            ],
        }
        if rule_files:
            cfg["rule_files"] = [str(p) for p in rule_files]
        if alertmanager:
            cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        self.process = ManagedProcess(f"prometheus-{self.port}", [
            require_binary("prometheus"),
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--web.enable-lifecycle",
            *extra_flags,
        ], tmp)

    def start(self) -> Prometheus:
        self.process.start().wait_ready(lambda: http_ok(f"{self.url}/-/ready"))
        return self

    def stop(self) -> None:
        self.process.stop()

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query failed: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the ``result`` list (vector samples)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, expr: str) -> float | None:
        """Single scalar of an instant query (``None`` when the result is empty)."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"{expr} returned {len(result)} series: {result}")
        return float(result[0]["value"][1])

    def targets_up(self) -> bool:
        data = self._get("/api/v1/targets", {})
        active = data["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def alerts(self) -> list[dict[str, Any]]:
        data = self._get("/api/v1/alerts", {})
        alerts: list[dict[str, Any]] = data["alerts"]
        return alerts


# --- Alertmanager --------------------------------------------------------------------------------------------------
class Alertmanager:
    """A real Alertmanager (Debian package) on free ports with the given config."""

    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.cluster_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tmp / f"alertmanager-{self.port}"
        self.dir.mkdir(parents=True)
        (self.dir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.process = ManagedProcess(f"alertmanager-{self.port}", [
            require_binary("prometheus-alertmanager") if shutil.which("prometheus-alertmanager")
            else require_binary("alertmanager"),
            f"--config.file={self.dir / 'alertmanager.yml'}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--cluster.listen-address=127.0.0.1:{self.cluster_port}",
        ], tmp)

    def start(self) -> Alertmanager:
        self.process.start().wait_ready(lambda: http_ok(f"{self.url}/-/ready"))
        return self

    def stop(self) -> None:
        self.process.stop()


# --- otel-ml processor and collector -------------------------------------------------------------------------------
def processor_command(config_path: Path) -> list[str]:
    """argv that runs the otel-ml processor with ``config_path`` in this interpreter."""
    return [sys.executable, "-m", "otel_ml.processor", "--config", str(config_path)]


def collector_command(config_path: Path) -> list[str]:
    """argv that runs the OCB-built collector with ``config_path``."""
    return [collector_binary(), f"--config={config_path}"]
