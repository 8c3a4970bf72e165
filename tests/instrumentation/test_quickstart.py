"""The quickstart example runs and prints the events and metrics it emitted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_prints_events_and_metrics() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    lines = out.splitlines()
    assert sum(line.startswith("ml.prediction {") for line in lines) == 4
    assert sum(line.startswith("ml.label {") for line in lines) == 3
    assert any(line.startswith("metric ml.client.predictions") for line in lines)
    assert "'ml.prediction.classes': ['setosa', 'versicolor', 'virginica']" in out
