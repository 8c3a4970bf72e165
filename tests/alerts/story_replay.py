"""Replaying 30-day stories through the SDK, the real processor and a real Prometheus, then the shipped rules.

How (and why this way): a month cannot pass in a test, so the story runs on a **simulated clock** and Prometheus
gets the resulting history with its timestamps.

1. Every model of the run gets its evaluation set (:func:`tests.alerts.story.evaluation_set`, its own seed) and its
   reference from ``otel-ml reference fit`` (the real CLI).
2. The real processor (:mod:`tests.alerts.story_processor`: SQLite store, estimation stage, 7-day label window)
   reads a clock file the replay advances one step (2 simulated hours) at a time. Per step, each model logs that
   step's predictions through ``otel_ml.ModelMonitor`` (real SDK, OTLP/gRPC straight to the processor: the collector
   adds nothing to the metrics and is tested elsewhere) and the labels due (30 % of the predictions, 1 to 3 days
   late); the replay waits until the processor has counted every event and expired every prediction whose label
   window has passed, then scrapes the processor's Prometheus endpoint: one snapshot per step, stamped with the
   simulated time.
3. The snapshots go into a real Prometheus (2.42, Debian) by remote write, with their timestamps (an
   out-of-order window lets history arrive after newer samples).
4. The shipped recording rules are evaluated over the whole month by the real Prometheus (range queries at the
   step, dependency level by level, results written back by remote write: what ``promtool tsdb create-blocks-from
   rules`` does), then every shipped alert expression; an alert fires once its expression has held for its
   ``for:`` at consecutive evaluations (Prometheus' pending -> firing rule, applied to the range result).

Evaluation is at the snapshot step (2h), so 1-hour windows hold one sample and produce nothing: at 1000 predictions
a day an hour holds 42, below ``min_predictions`` (100), so they could not alert in real time either.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

import otel_ml
from otel_ml.alerting import generate
from otel_ml.reference import cli as reference_cli
from otel_ml.semconv import metrics as m
from otel_ml.semconv.prometheus import prom_name
from tests.alerts import story
from tests.support.procs import ROOT, ManagedProcess, Prometheus, free_port, tcp_open
from tests.support.promql_checks import metric_names
from tests.support.remote_write import Series, remote_write

DAY_S = 86400
STEP_S = 6 * 3600
"""Simulated time between two snapshots and two rule evaluations."""
LABEL_WINDOW_S = 7 * DAY_S
PER_DAY = 1000
VERSION = "1"
JOB, INSTANCE = "otel-ml-processor", "story"
_DURATION = re.compile(r"^(\d+)([smhdw])$")


def seconds(duration: str) -> float:
    """``30m`` -> 1800."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(duration)
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": DAY_S, "w": 7 * DAY_S}[match.group(2)]


@dataclass(frozen=True)
class StoryModel:
    """One model of a run: its name, story and seed."""

    name: str
    schedule: story.Schedule
    seed: int
    reference_seed: int | None = None
    """Seed of the evaluation set (default: ``seed``); models with the same one share a fitted reference."""

    @property
    def evaluation_seed(self) -> int:
        return self.seed if self.reference_seed is None else self.reference_seed


@dataclass
class Snapshot:
    """The processor's series at one simulated time."""

    time: float
    samples: list[tuple[str, tuple[tuple[str, str], ...], float]]


@dataclass
class Firing:
    """One alert episode: from the evaluation it fired at to the last one it was firing at."""

    alert: str
    labels: dict[str, str]
    start: float
    end: float


@dataclass
class Run:
    """A replayed run: models, snapshots, the Prometheus that holds them, what fired."""

    models: list[StoryModel]
    start: float
    days: int
    step_s: int = STEP_S
    snapshots: list[Snapshot] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    sent: dict[str, dict[str, int]] = field(default_factory=dict)

    def day(self, t: float) -> float:
        """Story day (from 0) of simulated time ``t``."""
        return (t - self.start) / DAY_S


# --- 1. references -------------------------------------------------------------------------------------------------
def _fit_one(name: str, seed: int, directory: str, work: str) -> str:
    data = Path(work) / f"evaluation-{name}.parquet"
    story.evaluation_set(seed).to_parquet(data, index=False)
    argv = ["fit", "--model", name, "--data", str(data), "--task", "multilabel", "--target", "tags",
            "--prediction", "tags_pred", "--classes", *story.KNOWN_TAGS,
            "--scores", *(f"s_{t}" for t in story.KNOWN_TAGS), "--features", *story.FEATURES,
            "--seed", str(seed), "--out", str(Path(directory) / name / "default")]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        status = reference_cli.main(argv)
    if status != 0:
        raise RuntimeError(f"otel-ml reference fit {name}: status {status}\n{buffer.getvalue()}")
    return buffer.getvalue().strip()


def fit_references(models: Sequence[StoryModel], directory: Path, work: Path, workers: int = 2) -> list[str]:
    """``otel-ml reference fit`` of each evaluation set into ``directory/<model>/default`` (one fit per evaluation
    seed, copied to the other models of that seed; ``workers`` processes: the fits are the slowest part)."""
    first: dict[int, StoryModel] = {}
    for mdl in models:
        first.setdefault(mdl.evaluation_seed, mdl)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        jobs = [pool.submit(_fit_one, mdl.name, seed, str(directory), str(work)) for seed, mdl in first.items()]
        out = [job.result() for job in jobs]
    for mdl in models:
        source = first[mdl.evaluation_seed]
        if source is not mdl:
            shutil.copytree(directory / source.name, directory / mdl.name)
    return out


# --- 2. the replay -------------------------------------------------------------------------------------------------
class StoryProcessor:
    """The processor subprocess on the clock file."""

    def __init__(self, work: Path, references: Path, start: float) -> None:
        self.grpc_port, self.prom_port = free_port(), free_port()
        self.clock = work / "clock"
        self.set_time(start)
        config = {
            "instance_id": INSTANCE,
            "receiver": {"grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"}, "http": None},
            "store": {"backend": "sqlite", "path": str(work / "store.db"), "label_window": "7d",
                      "expire_interval": "10s"},
            "metrics": {"otlp": None, "prometheus": {"endpoint": f"127.0.0.1:{self.prom_port}"}},
            "reference": {"directory": str(references), "reload_interval": "1h"},
            "relabel": {"path": str(work / "relabel.jsonl"), "max_samples": 1000},
        }
        path = work / "processor.yaml"
        path.write_text(yaml.safe_dump(config))
        self.process = ManagedProcess("story-processor", [sys.executable, "-m", "tests.alerts.story_processor",
                                                          str(path), str(self.clock)], work, cwd=ROOT)

    def set_time(self, t: float) -> None:
        tmp = self.clock.with_suffix(".tmp")
        tmp.write_text(repr(float(t)))
        os.replace(tmp, self.clock)

    def start(self) -> StoryProcessor:
        self.process.start().wait_ready(lambda: tcp_open(self.grpc_port) and tcp_open(self.prom_port), timeout=120)
        return self

    def stop(self) -> None:
        self.process.stop()

    def exposition(self) -> str:
        """The processor's ``/metrics`` text."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.prom_port}/metrics", timeout=30) as resp:
            return resp.read().decode()

    def scrape(self) -> list[tuple[str, dict[str, str], float]]:
        """Every ``ml_*`` sample, parsed by ``prometheus_client``."""
        return [(s.name, dict(s.labels), float(s.value)) for fam in text_string_to_metric_families(self.exposition())
                for s in fam.samples if s.name.startswith("ml_")]


_LINE = re.compile(r'^(ml_[a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def fast_parse(text: str, names: set[str] | None = None) -> list[tuple[str, dict[str, str], float]]:
    """``ml_*`` samples of a Prometheus text exposition (what the processor writes: no timestamps or exemplars),
    only those named in ``names`` when given; much faster than a general parser on thousands of lines."""
    out = []
    for line in text.splitlines():
        if not line.startswith("ml_"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        if names is not None and name not in names:
            continue
        parsed = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(labels or "")}
        out.append((name, parsed, float(value)))
    return out


def _total(samples: Iterable[tuple[str, dict[str, str], float]], name: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for n, labels, v in samples:
        if n == name:
            out[labels.get("ml_model_name", "")] += v
    return out


def _settled(processor: StoryProcessor, sent: Mapping[str, Mapping[str, int]], expired: int,
             names: Mapping[str, str], step: int) -> str:
    """Polls the processor until it counted every event sent and expired every prediction due; its exposition."""
    last: list[str] = []

    def check() -> bool:
        text = processor.exposition()
        last[:] = [text]
        samples = fast_parse(text, set(names.values()))
        preds, labels = _total(samples, names["predictions"]), _total(samples, names["labels"])
        done = all(preds.get(x, 0) == sent["predictions"][x] and labels.get(x, 0) == sent["labels"][x]
                   for x in sent["predictions"])
        return done and sum(_total(samples, names["expired"]).values()) == expired

    def missing() -> str:
        samples = fast_parse(last[0], set(names.values())) if last else []
        preds, labels = _total(samples, names["predictions"]), _total(samples, names["labels"])
        off = {x: (preds.get(x, 0), sent["predictions"][x], labels.get(x, 0), sent["labels"][x])
               for x in sent["predictions"]
               if (preds.get(x, 0), labels.get(x, 0)) != (sent["predictions"][x], sent["labels"][x])}
        return (f"(counted, sent) predictions and labels that differ: {off}; expired counted "
                f"{sum(_total(samples, names['expired']).values())} of {expired}")

    _poll(check, what=f"step {step}: every event counted and expired", why=missing)
    return last[0]


def _poll(check: Any, what: str, timeout: float = 180.0, why: Any = None) -> None:
    """``check()`` until true, backing off from 10 ms to 0.5 s (each check costs the processor a full exposition)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f": {why()}" if why else ""))
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


@dataclass
class _Pending:
    due_step: int
    arrival_step: int
    ids: list[str]
    labels: list[list[str]]


def replay(run: Run, processor: StoryProcessor, keep: set[str], per_day: int = PER_DAY,
           progress: bool = True) -> None:
    """Serve ``run.days`` days of every model's story through the SDK, one snapshot per step (see module doc)."""
    step_s = run.step_s
    steps = run.days * DAY_S // step_s
    per_step = per_day * step_s / DAY_S
    monitors = {mdl.name: otel_ml.ModelMonitor(mdl.name, version=VERSION, task="multilabel", classes=list(story.TAGS),
                                               features=list(story.FEATURES)) for mdl in run.models}
    labelers = {mdl.name: otel_ml.ModelMonitor(mdl.name) for mdl in run.models}
    rngs = {mdl.name: np.random.default_rng(10_000 + mdl.seed) for mdl in run.models}
    pending: dict[str, list[_Pending]] = {mdl.name: [] for mdl in run.models}
    unlabeled: dict[str, list[tuple[int, int]]] = {mdl.name: [] for mdl in run.models}  # (arrival step, count)
    sent: dict[str, defaultdict[str, int]] = {"predictions": defaultdict(int), "labels": defaultdict(int)}
    names = {"predictions": prom_name(m.PREDICTIONS), "labels": prom_name(m.LABELS),
             "expired": prom_name(m.EXPIRED_PREDICTIONS)}
    for k in range(steps):
        t_end = run.start + (k + 1) * step_s
        day = (k + 0.5) * step_s / DAY_S
        processor.set_time(t_end - 60)  # arrival time of this step's events (see _expected_expired)
        for mdl in run.models:
            rng = rngs[mdl.name]
            n = int(rng.poisson(per_step))
            tickets = story.generate(rng, n, mdl.schedule, day)
            ids = [f"{mdl.name}-{k}-{i}" for i in range(n)]
            when = run.start + k * step_s + rng.uniform(0, step_s, size=n)
            if n:
                monitors[mdl.name].log_predictions([set(p) for p in tickets.predicted], scores=tickets.scores,
                                                   features=tickets.features(), prediction_ids=ids,
                                                   timestamp=int(when.mean() * 1e9))
            share = story.label_share(mdl.schedule, day)
            labeled = rng.random(n) < share
            delays = rng.uniform(*story.LABEL_DELAY_DAYS, size=n) * DAY_S
            due = k + np.ceil(delays / step_s).astype(int)
            by_due: dict[int, _Pending] = {}
            for i in np.flatnonzero(labeled):
                p = by_due.setdefault(int(due[i]), _Pending(int(due[i]), k, [], []))
                p.ids.append(ids[i])
                p.labels.append(tickets.truth[i])
            pending[mdl.name].extend(by_due.values())
            unlabeled[mdl.name].append((k, int(n - labeled.sum())))
            sent["predictions"][mdl.name] += n
            now_due = [p for p in pending[mdl.name] if p.due_step == k]
            pending[mdl.name] = [p for p in pending[mdl.name] if p.due_step != k]
            if not story.delivers_labels(mdl.schedule, day):  # lost: those predictions expire unlabeled
                unlabeled[mdl.name] += [(p.arrival_step, len(p.ids)) for p in now_due]
                now_due = []
            for p in now_due:
                labelers[mdl.name].log_labels(p.ids, [set(x) for x in p.labels], timestamp=int((t_end - 60) * 1e9))
                sent["labels"][mdl.name] += len(p.ids)
        otel_ml.force_flush()
        processor.set_time(t_end)
        expired = sum(c for steps_ in unlabeled.values() for s, c in steps_
                      if (run.start + (s + 1) * step_s - 60) + LABEL_WINDOW_S < t_end)
        text = _settled(processor, sent, expired, names, k)
        run.snapshots.append(Snapshot(t_end, [
            (n, tuple(sorted({**lab, "job": JOB, "instance": INSTANCE}.items())), v)
            for n, lab, v in fast_parse(text, keep)]))
        if progress and (k + 1) * step_s % (5 * DAY_S) == 0:
            print(f"  story day {(k + 1) * step_s // DAY_S}/{run.days}", flush=True)
    run.sent = {k: dict(v) for k, v in sent.items()}


# --- 3./4. Prometheus: history, recording rules, alerts ----------------------------------------------------------
def history_prometheus(work: Path) -> Prometheus:
    """A real Prometheus accepting remote writes of history (out-of-order window, ten-year retention)."""
    prom = Prometheus(work, {}, extra_flags=["--storage.tsdb.retention.time=3650d"])
    config_path = prom.dir / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    config["storage"] = {"tsdb": {"out_of_order_time_window": "90d"}}
    config_path.write_text(yaml.safe_dump(config))
    return prom.start()


_COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


def to_series(snapshots: Sequence[Snapshot], start: float) -> list[Series]:
    """Snapshots -> one remote-write series per (name, labels), samples in time order.

    A counter series gets a 0 at the snapshot before its first one (``start`` for those present from the first
    step): scraped every minute, a counter is first seen near 0; seen first with a whole step's count, ``increase()``
    would extrapolate towards its start differently for a numerator and its denominator.
    """
    by: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = defaultdict(list)
    previous = {snap.time: prev for prev, snap in zip([start, *(s.time for s in snapshots)], snapshots, strict=False)}
    for snap in snapshots:
        for name, labels, value in snap.samples:
            key = (("__name__", name), *labels)
            if key not in by and name.endswith(_COUNTER_SUFFIXES):
                by[key].append((previous[snap.time], 0.0))
            by[key].append((snap.time, value))
    return [(tuple(sorted(k)), v) for k, v in by.items()]


def query_range(prom: Prometheus, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """``/api/v1/query_range`` (POST: rule expressions are long)."""
    body = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                   "step": f"{step:g}"}).encode()
    request = urllib.request.Request(f"{prom.url}/api/v1/query_range", data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=300) as resp:
        answer = json.loads(resp.read())
    if answer.get("status") != "success":
        raise RuntimeError(f"query_range failed: {answer}")
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def rule_levels(rules: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Recording rules grouped by dependency depth (a rule after every rule whose output it reads)."""
    recorded = {r["record"] for r in rules}
    depth: dict[int, int] = {}

    def level(i: int) -> int:
        if i not in depth:
            deps = metric_names(rules[i]["expr"]) & recorded
            depth[i] = 1 + max((level(j) for j, r in enumerate(rules) if r["record"] in deps), default=-1)
        return depth[i]

    levels: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for i, rule in enumerate(rules):
        levels[level(i)].append(rule)
    return [levels[k] for k in sorted(levels)]


def evaluate(run: Run, prom: Prometheus, rule_file: Mapping[str, Any]) -> None:
    """The shipped recording rules over the run (level by level, written back), then the alerts (see module doc)."""
    step = run.step_s
    start, end = run.start + step, run.start + run.days * DAY_S
    recording = [r for g in rule_file["groups"] for r in g["rules"] if "record" in r]
    began = time.monotonic()
    for rules in rule_levels(recording):
        out: list[Series] = []
        for rule in rules:
            for result in query_range(prom, rule["expr"], start, end, step):
                labels = {**result["metric"], **rule.get("labels", {}), "__name__": rule["record"]}
                points = [(float(t), float(v)) for t, v in result["values"]]
                out.append((tuple(sorted(labels.items())), points))
        if out:
            remote_write(prom.url, out)
    run.timings["recording rules"] = time.monotonic() - began
    began = time.monotonic()
    for rule in (r for g in rule_file["groups"] for r in g["rules"] if "alert" in r):
        hold = seconds(rule.get("for", "0s"))
        keep = seconds(rule.get("keep_firing_for", "0s"))
        for result in query_range(prom, rule["expr"], start, end, step):
            times = [float(t) for t, _ in result["values"]]
            labels = {k: v for k, v in result["metric"].items() if k != "__name__"}
            labels.update(rule.get("labels", {}))
            active = 0.0
            current: Firing | None = None
            previous: float | None = None
            for t in times:
                if previous is None or t - previous > step * 1.5:  # a gap: the condition stopped holding
                    # still firing at the evaluation before t (keep_firing_for since the first false one): continue
                    kept = current is not None and previous is not None and t - previous - 2 * step < keep
                    if not kept:
                        active, current = t, None
                previous = t
                if current is not None or t - active >= hold:
                    if current is None:
                        current = Firing(rule["alert"], labels, t, t)
                        run.firings.append(current)
                    current.end = t
    run.timings["alerts"] = time.monotonic() - began


def shipped_rules() -> dict[str, Any]:
    """The shipped rule file, as generated from ``alerts/config.yaml``."""
    return generate.render()


def kept_series(rule_file: Mapping[str, Any]) -> set[str]:
    """Series names the shipped rules read (the snapshots keep only those)."""
    names: set[str] = set()
    for group in rule_file["groups"]:
        for rule in group["rules"]:
            names |= metric_names(rule["expr"])
    return {n for n in names if not n.startswith(("model:", "model_", "job:", "job_"))}


def first_firing(run: Run, alert: str, **labels: str) -> Firing | None:
    """The earliest episode of ``alert`` whose labels include ``labels``."""
    hits = [f for f in run.firings if f.alert == alert and all(f.labels.get(k) == v for k, v in labels.items())]
    return min(hits, key=lambda f: f.start) if hits else None


def story_start(days: int, step_s: int = STEP_S) -> float:
    """A step-aligned start, ``days`` + 2 days ago (history Prometheus accepts, wholly in the past)."""
    now = time.time()
    return math.floor((now - (days + 2) * DAY_S) / step_s) * step_s
