"""The ``otel-ml`` command line exits quietly when its reader goes away (``otel-ml ... | head``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from otel_ml.cli import EXIT_BROKEN_PIPE

ROOT = Path(__file__).resolve().parents[1]


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    # a subcommand printing far more than a pipe holds, registered the way the real ones are
    (tmp_path / "chatty_cli.py").write_text(
        "def main(argv):\n    for i in range(200_000):\n        print('line', i)\n    return 0\n")
    program = ("import sys; from otel_ml import cli; cli._COMMANDS['chatty'] = ('chatty_cli', 'test'); "
               "sys.exit(cli.main(['chatty']))")
    env_path = f"{tmp_path}:{ROOT}"
    shell = f'PYTHONPATH={env_path} "{sys.executable}" -c "{program}" | head -n 2; echo "status=${{PIPESTATUS[0]}}"'
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["line 0", "line 1", f"status={EXIT_BROKEN_PIPE}"]
    assert done.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored" on exit
