"""``otel-ml reference``: fit, report and verify evaluation-set reference artifacts.

Usage::

    otel-ml reference fit --model router --data eval.parquet --task multiclass --target label --prediction pred \\
        [--version 2024-06-01] [--scores p_a p_b p_c | --scores a=p_a b=p_b c=p_c] [--classes a b c] \\
        [--positive-class b] [--features age country] [--segments region] [--method auto] \\
        --out references/router/default
    otel-ml reference fit --model search --data eval.csv --task ranking --target relevant --prediction ranked \
        [--ranking-k 1 5 10] --out references/search/default
    otel-ml reference report references/router/default [--out ./router-report]
    otel-ml reference verify references/router/default

The processor reads ``<reference.directory>/<model>/<version or "default">/``. Exit status: 0 on success, 1 when an
artifact is refused (tampered, unknown version), 2 on bad arguments or an unusable evaluation set.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from otel_ml.reference.artifact import ArtifactError, load
from otel_ml.reference.fit import SUPPORTED_TASKS, ReferenceFitError, fit_reference, read_table
from otel_ml.reference.report import render_text, write_report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-ml reference", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a reference artifact from a labeled evaluation set")
    fit.add_argument("--model", required=True, help="model name (ml.model.name)")
    fit.add_argument("--version", default="", help="model version the reference is for (default: any)")
    fit.add_argument("--data", required=True, help="evaluation set (.parquet or .csv)")
    fit.add_argument("--task", required=True, choices=SUPPORTED_TASKS)
    fit.add_argument("--target", required=True,
                     help="true value column (multilabel: list or 'a|b' strings; ranking: relevant items, same forms)")
    fit.add_argument("--prediction", required=True,
                     help="predicted value column (multilabel: label set; ranking: ranked items, best first)")
    fit.add_argument("--scores", nargs="*", default=[],
                     help="score columns (binary: P(positive class) or one per class, in --classes order), or "
                          "CLASS=COLUMN pairs (benign=p_benign malignant=p_malignant)")
    fit.add_argument("--classes", nargs="*", default=None, help="class order matching --scores")
    fit.add_argument("--positive-class", default=None,
                     help="binary: the class a single score column is P() of (default: the last of --classes, "
                          "else the last of the sorted class values)")
    fit.add_argument("--features", nargs="*", default=[], help="feature columns (names as in ml.feature.<name>)")
    fit.add_argument("--segments", nargs="*", default=[], help="segment columns (names as in ml.segment.<dim>)")
    fit.add_argument("--method", default="auto", help="estimator: auto, cbpe, atc, learned (regression: dle)")
    fit.add_argument("--ranking-k", type=int, nargs="*", default=[1, 5, 10],
                     help="ranking: k of the precision@k / NDCG@k baselines")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", required=True, help="artifact directory, e.g. references/<model>/default")
    rep = sub.add_parser("report", help="print the evaluation-set analysis and write a plot")
    rep.add_argument("directory")
    rep.add_argument("--out", default=None, help="where report.png/report.html go (default ./reference-report-<model>)")
    ver = sub.add_parser("verify", help="check an artifact's format version and checksums")
    ver.add_argument("directory")
    return parser


def _scores(items: Sequence[str]) -> list[str] | dict[str, str]:
    """``--scores``: column names, or ``CLASS=COLUMN`` pairs (all of them, or none).

    Raises:
        ReferenceFitError: Pairs mixed with plain names.
    """
    pairs = [item.partition("=") for item in items]
    if not any(sep for _, sep, _ in pairs):
        return list(items)
    if not all(sep and cls and col for cls, sep, col in pairs):
        raise ReferenceFitError(f"--scores: give either column names or CLASS=COLUMN pairs, not both: {list(items)}")
    return {cls: col for cls, _, col in pairs}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``otel-ml reference``."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "fit":
        started = time.perf_counter()
        try:
            frame = read_table(args.data)
            art = fit_reference(frame, model=args.model, version=args.version, task=args.task, target=args.target,
                                prediction=args.prediction, scores=_scores(args.scores), features=args.features,
                                segments=args.segments, classes=args.classes, method=args.method,
                                random_state=args.seed, ranking_k=args.ranking_k, positive_class=args.positive_class)
        except (ReferenceFitError, ValueError) as exc:
            print(f"otel-ml reference fit: {exc}", file=sys.stderr)
            return 2
        out = art.save(args.out)
        est = art.estimator.estimator_key if art.estimator is not None else "none"
        print(f"wrote {out} ({int(art.metrics['rows'])} rows, estimator {est}, "
              f"{len(art.weak_segments)} weak segments) in {time.perf_counter() - started:.1f} s")
        return 0
    try:
        art = load(args.directory)
    except ArtifactError as exc:
        print(f"otel-ml reference {args.command}: {exc}", file=sys.stderr)
        return 1
    if args.command == "verify":
        print(f"ok: {args.directory} (model {art.model}, version {art.version or '(any)'}, task {art.task})")
        return 0
    print(render_text(art))
    png, page = write_report(art, args.out or Path(f"reference-report-{art.model}"))
    print(f"\nwrote {png} and {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
