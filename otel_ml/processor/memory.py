"""Memory limiter: refuse requests before their bodies are read when memory would pass the soft limit; shed caches
above the hard limit. In the spirit of the collector's ``memory_limiter`` processor (``memory_limiter:`` config).

RSS alone is a late signal: a request admitted now allocates its body, its decompressed bytes and its decoded
rows only later, and many requests can be admitted between two samples. So every request *reserves* the memory it
may take before it reads anything: ``EXPANSION`` times its (decompressed) size, as its bytes arrive
(:meth:`Reservation.grow`). A reservation is granted only while ``RSS + every reservation in flight`` stays at or
below the soft limit, and released when the request is answered. Requests that cannot reserve are refused with
the retryable codes (gRPC ``UNAVAILABLE``, HTTP 503 + ``Retry-After``), counted
``ml.processor.requests.refused{ml.reason=memory_limit}``; the sender keeps the data and retries.

A background thread samples RSS every ``check_interval``. Above the hard limit, or above the soft limit with no
request in flight (caches grown past it would otherwise refuse every request forever), it *sheds*: it calls every
function registered with :func:`register_shedder` (decode and stage caches register theirs, at import time), runs
the garbage collector and returns freed heap to the OS (``malloc_trim``).

Thread safety: every method may be called from any thread.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

_logger = logging.getLogger(__name__)

EXPANSION: Final = 8
"""Bytes a request may hold at its peak per byte of its decompressed body: the body plus what decoding and committing
it allocate. Measured (peak RSS over the body, 8.8 MiB request of the benchmark workload, SQLite store; see
``benchmarks/README.md``): C decoder 1.4x without stages, 2.8x with the estimation stage's extras; the Python path
(which the C decoder hands any record shape it does not know) 5.5x and 7.0x. So 1 + 7 = 8: the worst case, since a
sender chooses the shapes."""
MIN_RESERVATION: Final = 64 * 1024
"""What a request reserves before its size is known (the first read of a gRPC message or HTTP body)."""
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


_SHEDDERS: list[Callable[[], object]] = []
_SHEDDERS_LOCK = threading.Lock()


def register_shedder(shed: Callable[[], object]) -> None:
    """Register ``shed()`` with every memory limiter of this process (present and future).

    The hook for caches that can be rebuilt (decode's attribute caches, a stage's windows): the limiter calls
    ``shed()`` from its own thread when RSS passes the hard limit, or the soft limit with no request in flight.
    ``shed`` must be quick, thread-safe and must not raise (an exception is logged and ignored); it may be called
    again every ``check_interval`` while memory stays high. Registering the same function twice registers it once.
    """
    with _SHEDDERS_LOCK:
        if shed not in _SHEDDERS:
            _SHEDDERS.append(shed)


def read_rss() -> int:
    """Resident set size of this process in bytes (``/proc/self/statm``; ``resource`` peak elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def total_memory() -> int:
    """Memory available to this process: the cgroup limit (v2, then v1) when set, else the host's total."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number: no limit
            host = _host_memory()
            return min(int(text), host) if host else int(text)
    return _host_memory() or 2**40


def _host_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * _PAGE
    except (ValueError, OSError, AttributeError):
        return 0


def _malloc_trim() -> Callable[[], None]:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = libc.malloc_trim if libc is not None else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return lambda: None
    return lambda: trim(0)


class Reservation:
    """Memory reserved by one request; :meth:`release` (idempotent) when the request is answered."""

    __slots__ = ("_done", "_limiter", "bytes", "seq")

    def __init__(self, limiter: MemoryLimiter, nbytes: int, seq: int) -> None:
        self._limiter = limiter
        self.bytes = nbytes
        self.seq = seq
        self._done = False

    def grow(self, body_bytes: int) -> bool:
        """Reserve ``EXPANSION * body_bytes`` more (as more of the body is read or decompressed); False: refused."""
        extra = EXPANSION * body_bytes
        if self._done or self._limiter._take(extra, self.seq) is None:
            return False
        self.bytes += extra
        return True

    def resize(self, body_bytes: int) -> bool:
        """Make the reservation ``EXPANSION * body_bytes``, giving back or taking the difference; False: refused
        (the reservation is then unchanged). For a reservation taken before the size was known, e.g. one covering a
        read whose bytes land outside the request's code (:meth:`MemoryLimiter.reserve_bytes`)."""
        delta = EXPANSION * body_bytes - self.bytes
        if self._done:
            return False
        if delta > 0:
            if self._limiter._take(delta, self.seq) is None:
                return False
        elif delta < 0:
            self._limiter._shrink(-delta)
        self.bytes += delta
        return True

    def release(self) -> None:
        """Give the reservation back."""
        if not self._done:
            self._done = True
            self._limiter._give(self.bytes, self.seq)
            self.bytes = 0

    def release_later(self) -> None:
        """Have the limiter release the reservation before its next decision (for finalizers: ``__del__`` may run
        during a garbage collection inside the limiter's lock, so it must not take it)."""
        if not self._done:
            self._limiter._orphans.append(self)


class MemoryLimiter:
    """Soft/hard RSS limits in bytes (see the module docstring); ``soft <= hard``."""

    def __init__(self, soft: int, hard: int, check_interval: float = 1.0,
                 rss: Callable[[], int] = read_rss) -> None:
        self.soft = soft
        self.hard = hard
        self.check_interval = check_interval
        self._rss = rss
        self._lock = threading.Lock()
        self.reserved = 0
        self._active: dict[int, None] = {}  # insertion-ordered: the first key is the oldest request
        self._next_seq = 0
        self.last_rss = rss()
        self._shedders: list[Callable[[], object]] = []
        self._last_resort: list[Callable[[], object]] = [gc.collect, _malloc_trim()]
        self._stop = threading.Event()
        self._pressure = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_shed = 0.0
        self.sheds = 0
        self._orphans: collections.deque[Reservation] = collections.deque()

    def register_shedder(self, shed: Callable[[], object]) -> None:
        """Like the module's :func:`register_shedder`, for this limiter only. Shedders run before the garbage
        collector and ``malloc_trim``."""
        with self._lock:
            if shed not in self._shedders:
                self._shedders.append(shed)

    @property
    def active(self) -> int:
        """Requests holding a reservation."""
        return len(self._active)

    def reserve(self, body_bytes: int = 0) -> Reservation | None:
        """Reserve for a new request whose body is ``body_bytes`` (0: unknown yet); None: refuse it."""
        nbytes = EXPANSION * body_bytes if body_bytes else MIN_RESERVATION
        seq = self._take(nbytes, None)
        return None if seq is None else Reservation(self, nbytes, seq)

    def reserve_bytes(self, nbytes: int) -> Reservation | None:
        """Reserve ``nbytes`` (not a body size: no expansion) for a new request; None: refuse it."""
        seq = self._take(nbytes, None)
        return None if seq is None else Reservation(self, nbytes, seq)

    def would_admit(self) -> bool:
        """Whether :meth:`reserve` of an unknown-size request would succeed now (nothing is reserved)."""
        self._release_orphans()
        rss = self._rss()
        with self._lock:
            return rss + self.reserved + MIN_RESERVATION <= (self.hard if not self._active else self.soft)

    def _take(self, nbytes: int, seq: int | None) -> int | None:
        """Reserve ``nbytes`` for a new request (``seq`` None) or a growing one; its sequence number, or None."""
        self._release_orphans()
        rss = self._rss()
        with self._lock:
            self.last_rss = rss
            # The oldest request in flight (or a new one when none is) may use the spike room up to the hard limit:
            # one request of max_request_bytes must always be able to finish, even when RSS sits above the soft limit
            # (freed heap the allocator keeps) or soft - baseline is smaller than it needs, and requests growing
            # as their bodies arrive must not block each other forever. Every other reservation stays below soft.
            first = next(iter(self._active), None)
            privileged = first is None if seq is None else seq == first
            if rss + self.reserved + nbytes > (self.hard if privileged else self.soft):
                if privileged:
                    self._pressure.set()  # nothing else will free memory: shed now rather than refuse forever
                return None
            self.reserved += nbytes
            if seq is None:
                seq = self._next_seq
                self._next_seq += 1
                self._active[seq] = None
            return seq

    def _release_orphans(self) -> None:
        while self._orphans:
            try:
                self._orphans.popleft().release()
            except IndexError:  # another thread took the last one
                break

    def _shrink(self, nbytes: int) -> None:
        with self._lock:
            self.reserved = max(self.reserved - nbytes, 0)

    def _give(self, nbytes: int, seq: int) -> None:
        with self._lock:
            self.reserved = max(self.reserved - nbytes, 0)
            self._active.pop(seq, None)

    def rss(self) -> int:
        """RSS now (also what the ``ml.processor.memory.rss`` gauge reads)."""
        rss = self._rss()
        self.last_rss = rss
        return rss

    def check(self, pressure: bool = False) -> None:
        """Sample RSS; shed when above the hard limit, above the soft limit with nothing in flight, or when a request
        alone in flight was refused (``pressure``): at most once per ``check_interval`` (and per 0.5 s)."""
        self._release_orphans()
        rss = self.rss()
        with self._lock:
            idle = self.reserved == 0
            shedders = list(self._shedders)
        with _SHEDDERS_LOCK:
            shedders += [s for s in _SHEDDERS if s not in shedders]
        shedders += self._last_resort
        due = time.monotonic() - self._last_shed >= min(self.check_interval, 0.5)
        if due and (rss > self.hard or (rss > self.soft and idle) or pressure):
            self._last_shed = time.monotonic()
            self.sheds += 1
            for shed in shedders:
                try:
                    shed()
                except Exception:  # a shedder must never stop the limiter
                    _logger.exception("memory limiter: a shedder raised")
            after = self.rss()
            level = logging.WARNING if rss > self.soft else logging.INFO
            _logger.log(level, "memory limiter: RSS %.0f MiB (soft limit %.0f, hard %.0f MiB): caches shed, RSS now "
                        "%.0f MiB", rss / 2**20, self.soft / 2**20, self.hard / 2**20, after / 2**20)

    def start(self) -> MemoryLimiter:
        """Start the sampling thread."""
        self._thread = threading.Thread(target=self._run, name="otel-ml-memory-limiter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the sampling thread."""
        self._stop.set()
        self._pressure.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while True:
            pressure = self._pressure.wait(self.check_interval)
            if self._stop.is_set():
                return
            self._pressure.clear()
            try:
                self.check(pressure)
            except Exception:
                _logger.exception("memory limiter check failed")
