"""Receiver throughput, end to end, this tree against a baseline commit, alternating in one run.

The question: does the processor's network edge (uvicorn + h11 OTLP/HTTP layer with its guards, the stream-unary
gRPC servicer with auth/admission/memory checks before the read) keep the throughput of the hand-written
``ThreadingHTTPServer`` and unary servicer it replaced (baseline: ``--baseline``, default 7e19add, main just
before the change, so that everything else is the same)? The C decoder
path is the same in both.

Each round starts a real processor (``python -m otel_ml.processor``, SQLite WAL store, group commit, both receivers)
from the tree under test, pinned to core 0; this process, pinned to core 1, sends the same pre-serialized 1000-record
requests (``tests/support/workload.py``: 500 predictions + 500 labels joining earlier predictions) with 4 requests in
flight: over OTLP/HTTP (4 keep-alive connections; identity, then gzip) and over OTLP/gRPC. Events/s = records
acknowledged / wall time; events per processor CPU-second from /proc. Rounds alternate baseline and current; the
medians are reported, with the ratio current/baseline.

Run: ``.venv/bin/python benchmarks/bench_receivers.py [--rounds 3] [--requests 150] [--baseline 7e19add]``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.grpc_sender import send_requests  # noqa: E402
from tests.support.procs import free_port, tcp_open, wait_until  # noqa: E402
from tests.support.workload import PER_REQUEST, benchmark_requests  # noqa: E402


def checkout(ref: str, tmp: Path) -> Path:
    """A copy of ``ref`` with the C decoder built in place (copied when its source is unchanged)."""
    tree = tmp / f"tree-{ref}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    c_src = "otel_ml/processor/_fastdecode.c"
    same = (tree / c_src).read_bytes() == (ROOT / c_src).read_bytes()
    built = list((ROOT / "otel_ml" / "processor").glob("_fastdecode*.so"))
    if same and built:
        shutil.copy(built[0], tree / "otel_ml" / "processor" / built[0].name)
    else:  # compiled directly: an old setup.py/pyproject may not load with today's setuptools
        out = tree / "otel_ml" / "processor" / f"_fastdecode{sysconfig.get_config_var('EXT_SUFFIX')}"
        digest = hashlib.sha256((tree / c_src).read_bytes()).hexdigest()[:16]  # what the tree's _native checks
        subprocess.run([sysconfig.get_config_var("CC").split()[0], "-shared", "-fPIC", "-O2",
                        f'-DOTEL_ML_SOURCE_HASH="{digest}"', f"-I{sysconfig.get_paths()['include']}",
                        str(tree / c_src), "-o", str(out)], check=True, capture_output=True)
    check = subprocess.run([sys.executable, "-c", "from otel_ml.processor import _native; "
                            "assert _native.decoder is not None, _native.status"],
                           cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if check.returncode:  # a baseline on the Python decoder would not measure what this compares
        raise SystemExit(f"the C decoder of {ref} does not load: {check.stderr.strip()[-500:]}")
    return tree


def start(tree: Path, tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], int, int]:
    grpc_port, http_port = free_port(), free_port()
    cfg = {"instance_id": "bench", "receiver": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                                 "http": {"endpoint": f"127.0.0.1:{http_port}"}},
           "store": {"path": str(tmp / f"{name}.db")}, "metrics": {"otlp": None}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = open(tmp / f"{name}.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([sys.executable, "-m", "otel_ml.processor", "--config", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, cwd=tree, env=env,
                            preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    wait_until(lambda: tcp_open(grpc_port) and tcp_open(http_port), 60, what=f"processor {name}")
    return proc, grpc_port, http_port


def send_http(port: int, bodies: list[bytes], gz: bool, inflight: int = 4) -> tuple[float, int]:
    payloads = [gzip.compress(b, 1) for b in bodies] if gz else bodies
    headers = {"Content-Type": "application/x-protobuf", **({"Content-Encoding": "gzip"} if gz else {})}
    next_i = [0]
    acked = [0]
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(payloads):
                break
            conn.request("POST", "/v1/logs", body=payloads[i], headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                with lock:
                    acked[0] += 1
            else:
                print(f"  HTTP {resp.status}", file=sys.stderr)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(inflight)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, acked[0]


def measure(proc: subprocess.Popen[bytes], send: Callable[[], tuple[float, int]]) -> tuple[float, float]:
    p = psutil.Process(proc.pid)
    cpu0 = sum(p.cpu_times()[:2])
    elapsed, acked = send()
    cpu = sum(p.cpu_times()[:2]) - cpu0
    return acked * PER_REQUEST / elapsed, acked * PER_REQUEST / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=150, help="1000-record requests per measurement")
    ap.add_argument("--baseline", default="7e19add", help="commit with the previous receivers (main just before they were replaced)")
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="bench-receivers-") as d:
        tmp = Path(d)
        base = checkout(args.baseline, tmp)
        try:
            trees = {"baseline": base, "current": ROOT}
            results: dict[str, dict[str, list[tuple[float, float]]]] = {k: {} for k in trees}
            for r in range(args.rounds):
                # each round sends fresh ids (a new store per processor), same shapes
                bodies = benchmark_requests(args.requests * 3 + 10)
                for name in [x for x in (("baseline", "current") if r % 2 == 0 else ("current", "baseline"))
                             if x in trees]:
                    proc, gport, hport = start(trees[name], tmp, f"{name}-{r}")
                    try:
                        n = args.requests
                        send_requests([gport], bodies[:10])  # warm-up
                        cases = {
                            "http identity": partial(send_http, hport, bodies[10:10 + n], False),
                            "http gzip": partial(send_http, hport, bodies[10 + n:10 + 2 * n], True),
                            "grpc": partial(send_requests, [gport], bodies[10 + 2 * n:10 + 3 * n]),
                        }
                        for case, fn in cases.items():
                            wall, per_cpu = measure(proc, fn)
                            results[name].setdefault(case, []).append((wall, per_cpu))
                            print(f"round {r + 1} {name:8s} {case:13s} {wall:9,.0f} events/s wall "
                                  f"{per_cpu:9,.0f} per processor CPU-s", flush=True)
                    finally:
                        proc.terminate()
                        proc.wait(60)
            print(f"\nmedians over {args.rounds} rounds ({args.requests} requests of {PER_REQUEST} records each):")
            for case in results["current"]:
                b = [statistics.median(x[i] for x in results["baseline"][case]) for i in (0, 1)]
                c = [statistics.median(x[i] for x in results["current"][case]) for i in (0, 1)]
                print(f"  {case:13s} baseline {b[0]:9,.0f} /s ({b[1]:9,.0f} per CPU-s)   current {c[0]:9,.0f} /s "
                      f"({c[1]:9,.0f} per CPU-s)   ratio {c[0] / b[0]:.2f} wall, {c[1] / b[1]:.2f} CPU")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)


if __name__ == "__main__":
    main()
