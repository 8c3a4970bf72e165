"""``otel-ml`` command line: dispatches to the subcommand's module.

Subcommands are imported lazily so that ``otel-ml --help`` and the instrumentation never pull in the processor's
heavier dependencies.
"""

from __future__ import annotations

import importlib
import os
import sys

EXIT_BROKEN_PIPE = 141
"""Exit status when stdout's reader went away: 128 + SIGPIPE, what a shell reports for ``yes | head``."""

_COMMANDS: dict[str, tuple[str, str]] = {
    "processor": ("otel_ml.processor.cli", "Run the otel-ml processor: OTLP in, joined quality metrics out."),
    "reference": ("otel_ml.reference.cli", "Fit, inspect and report evaluation-set reference artifacts."),
    "demo": ("otel_ml.demo.cli", "Run the self-contained production-story demo on embedded defaults."),
    "generate": ("otel_ml.generate", "Prometheus rules, Grafana dashboards and provisioning for your thresholds."),
}


def _usage() -> str:
    lines = ["usage: otel-ml <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in _COMMANDS.items()]
    lines += ["", "Run `otel-ml <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``otel-ml`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if args else 2
    if args[0] in {"-V", "--version"}:
        from otel_ml import __version__

        print(__version__)
        return 0
    entry = _COMMANDS.get(args[0])
    if entry is None:
        print(f"otel-ml: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    try:
        result: int = module.main(args[1:])
        sys.stdout.flush()
    except BrokenPipeError:  # `otel-ml ... | head`: the reader left; stop quietly, like any Unix tool
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not raise again
        return EXIT_BROKEN_PIPE
    return result


if __name__ == "__main__":
    raise SystemExit(main())
