"""The C decoder under AddressSanitizer + UndefinedBehaviorSanitizer: the differential and fuzz tests, rerun.

Builds ``_fastdecode.c`` with ``-fsanitize=address,undefined`` into a copy of the package and runs
``test_fastdecode.py`` against it in a subprocess (the sanitizer runtimes are preloaded into Python). Any
out-of-bounds read, use-after-free or undefined behaviour aborts that run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from otel_ml.processor import _native

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _runtime(gcc: str, name: str) -> str:
    return subprocess.run([gcc, f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_fuzz_suite_under_sanitizers(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    assert gcc is not None
    shutil.copytree(ROOT / "otel_ml", tmp_path / "otel_ml", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copytree(ROOT / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    so = tmp_path / "otel_ml" / "processor" / f"_fastdecode{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run([gcc, "-shared", "-fPIC", "-g", "-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                    "-fno-sanitize-recover=undefined", f'-DOTEL_ML_SOURCE_HASH="{_native.source_hash()}"',
                    f"-I{sysconfig.get_paths()['include']}", str(_native.SOURCE), "-o", str(so)], check=True)
    asan, ubsan = _runtime(gcc, "libasan.so"), _runtime(gcc, "libubsan.so")
    if not (Path(asan).exists() and Path(ubsan).exists()):
        pytest.skip("sanitizer runtimes not installed")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "LD_PRELOAD": f"{asan} {ubsan}",
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    env.pop(_native.DISABLE_ENV, None)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    probe = subprocess.run([sys.executable, "-c", "import otel_ml.processor._native as n; print(n.SOURCE, n.status)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert str(tmp_path) in probe.stdout and "C fast-path" in probe.stdout, probe.stdout  # the sanitized build
    run = subprocess.run([sys.executable, "-m", "pytest", "-c", "pytest.ini", "-q", "-p", "no:cacheprovider",
                          "tests/processor/test_fastdecode.py"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1]
