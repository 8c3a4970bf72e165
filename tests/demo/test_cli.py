"""``otel-ml demo`` argument handling (no processes)."""

from __future__ import annotations

import pytest

from otel_ml import cli as top
from otel_ml.demo import cli


def test_help_is_dispatched_by_the_top_level_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        top.main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--quick", "--collector", "--prometheus", "--reference-dir", "--days"):
        assert flag in out


@pytest.mark.parametrize("argv", [["--collector", "http://127.0.0.1:4317"], ["--prometheus", "http://127.0.0.1:9"],
                                  ["--days", "3"], ["--per-day", "10"]])
def test_invalid_arguments_exit_2_with_a_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert "otel-ml demo:" in capsys.readouterr().err
