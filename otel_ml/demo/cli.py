"""``otel-ml demo``: a production story in about a minute, on embedded defaults, with nothing but ``pip``.

It trains two scikit-learn models on synthetic support tickets, fits their references from an evaluation set,
starts the otel-ml processor (SQLite store) on loopback, and serves a compressed production period through
:class:`otel_ml.ModelMonitor` while quality declines for several reasons at once. Progress is printed per simulated
day; the run ends with a summary of what changed, when, and how realized and estimated quality moved, and a static
HTML report. With ``--collector`` and ``--prometheus`` it uses a running collector and Prometheus instead.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import otel_ml
from otel_ml.demo import analysis, detection, models, reference, run, scenario, stack
from otel_ml.demo.report import write_report
from otel_ml.demo.timeline import Timeline

DEFAULT_OUT = "otel-ml-demo"
QUICK = (16, 1.0, 800)
"""Days, seconds per day and tickets per day of ``--quick`` (a day of at least the processor's 1 s tick, so drift
gauges are refreshed between snapshots)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otel-ml demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder: report, processor data, references "
                   f"(default: ./{DEFAULT_OUT}; the demo's own files in it are replaced)")
    p.add_argument("--days", type=int, default=28, help="simulated production days (default: 28)")
    p.add_argument("--day-seconds", type=float, default=2.0, help="wall-clock seconds per simulated day (default: 2)")
    p.add_argument("--per-day", type=int, default=1000, help="tickets per simulated day (default: 1000)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    p.add_argument("--quick", action="store_true", help="a short run (16 days of 1 s) for smoke tests")
    p.add_argument("--collector", metavar="URL", help="send events to this collector (OTLP gRPC, e.g. "
                   "http://localhost:4317) instead of starting a processor; needs --prometheus")
    p.add_argument("--prometheus", metavar="URL", help="read metrics from this Prometheus (e.g. "
                   "http://localhost:9090); needs --collector")
    p.add_argument("--reference-dir", metavar="DIR", help="where to write the reference artifacts (with "
                   "--collector: the reference directory of the processor behind it; default: <out>/references)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    return p


class _Progress:
    """One line per simulated day."""

    def __init__(self, days: int) -> None:
        self.days = days

    def __call__(self, day: int, timeline: Timeline, note: str) -> None:
        est, _ = timeline.estimated_accuracy()
        real = timeline.realized_accuracy()
        cov = timeline.label_coverage()
        drift = detection.feature_drift(timeline, models.ROUTER, scenario.DRIFTING_FEATURE).effect
        weak = timeline.weak_share()
        unseen = timeline.unseen_share()
        tags = timeline.tags_per_sample()
        traffic = timeline.traffic(models.ROUTER)
        line = (f"day {day + 1:>2}/{self.days}  router {traffic[-1]:>4.0f} pred  "
                f"acc est {_f(est[-1])} real {_f(real[-1])} (labels {_p(cov[-1])})  "
                f"PSI {_f(drift[-1])}  weak {_p(weak[-1])}  unseen {_p(unseen[-1])}  | tagger {_f(tags[-1], 2)} tags")
        if note:
            line += f"  <- {note}"
        print(line, flush=True)


def _f(v: float | None, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if v is not None else "  -  "


def _p(v: float | None) -> str:
    return f"{100 * v:4.1f}%" if v is not None else "  -  "


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a demo run produced."""

    timeline: Timeline
    analysis: analysis.Analysis
    summary: str
    report: Path | None


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit status."""
    args = _parser().parse_args(argv)
    if bool(args.collector) != bool(args.prometheus):
        print("otel-ml demo: --collector and --prometheus go together (example: --collector http://localhost:4317 "
              "--prometheus http://localhost:9090)", file=sys.stderr)
        return 2
    settings = run.Settings(days=args.days, day_seconds=args.day_seconds, per_day=args.per_day, seed=args.seed)
    if args.quick:
        settings.days, settings.day_seconds, settings.per_day = QUICK
    if settings.days < 8 or settings.per_day < 50:
        print("otel-ml demo: need --days >= 8 and --per-day >= 50", file=sys.stderr)
        return 2
    try:
        execute(settings, Path(args.out), collector=args.collector, prometheus=args.prometheus,
                reference_dir=Path(args.reference_dir) if args.reference_dir else None, report=not args.no_report)
    except (RuntimeError, OSError) as exc:
        print(f"otel-ml demo: {exc}", file=sys.stderr)
        return 1
    return 0


def execute(settings: run.Settings, out: Path, *, collector: str | None = None, prometheus: str | None = None,
            reference_dir: Path | None = None, report: bool = True) -> Outcome:
    """Run the whole demo with ``settings``, writing into ``out``; prints progress and the summary."""
    out = out.resolve()
    reference_dir = reference_dir.resolve() if reference_dir else out / "references"
    # A fresh store and fresh references each run; only the demo's own files are removed.
    for own in (out / "processor", out / "evaluation", out / "references"):
        if own.is_dir() and not collector:
            shutil.rmtree(own)
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    print(f"otel-ml demo: {settings.days} simulated days of a support-ticket service, "
          f"{settings.day_seconds:g} s per day, {settings.per_day} tickets per day")
    rng = np.random.default_rng(settings.seed)
    trained = models.train(rng)
    print(f"  trained {models.ROUTER} (multiclass) and {models.TAGGER} (multilabel) with scikit-learn")
    fitted = reference.fit_all(trained, rng, out / "evaluation", reference_dir)
    print(f"  fitted references from the evaluation set with `otel-ml reference fit` into {reference_dir}: {fitted}")

    if collector and prometheus:
        the_stack = stack.external(collector, prometheus)
    else:
        the_stack = stack.start_local(out / "processor", reference_dir)
        print(f"  started the otel-ml processor (SQLite store): OTLP {the_stack.otlp_endpoint}")
    try:
        otel_ml.configure(endpoint=the_stack.otlp_endpoint, protocol="grpc", schedule_delay=0.2,
                          resource={"service.name": "support-ticket-api"})
        monitors = run.Monitors.create([str(c) for c in trained.router.classes_])
        print(f"  serving traffic; metrics read back from the {the_stack.source.description}")
        for change in settings.schedule.changes:
            print(f"    (day {change.start_day(settings.days) + 1:>2} will bring: {change.what})")
        timeline = run.ProductionRun(settings, trained, the_stack, monitors, _Progress(settings.days)).run()
    finally:
        otel_ml.shutdown()
        the_stack.close()

    result = analysis.analyze(timeline, settings.schedule)
    text = analysis.summary(result, settings.days)
    print(text)
    path = None
    if report:
        path = write_report(out / "report.html", timeline, settings.schedule, result, the_stack.source.description,
                            text)
        print(f"\nReport (open it in a browser, works offline): {path}")
    print(f"Done in {time.monotonic() - began:.0f} s.")
    return Outcome(timeline, result, text, path)
