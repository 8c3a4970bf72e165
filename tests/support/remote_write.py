"""A minimal Prometheus remote-write client (protocol 1.0): history with explicit timestamps into a real Prometheus.

The body is a ``prometheus.WriteRequest`` protobuf (``prompb/remote.proto``: ``repeated TimeSeries timeseries = 1``;
``TimeSeries``: ``repeated Label labels = 1``, ``repeated Sample samples = 2``; ``Label``: ``name = 1``,
``value = 2``; ``Sample``: ``double value = 1``, ``int64 timestamp = 2`` in ms), encoded by hand, compressed with the
snappy *block* format using literal elements only: valid snappy that any decoder reads, without a snappy library
(the request is about as large as the protobuf). Prometheus needs ``--web.enable-remote-write-receiver``; samples
older than its head need ``storage.tsdb.out_of_order_time_window``.
"""

from __future__ import annotations

import struct
import urllib.request
from collections.abc import Iterable, Sequence

Series = tuple[tuple[tuple[str, str], ...], Sequence[tuple[float, float]]]
"""Sorted labels (``__name__`` included) and ``(timestamp_s, value)`` samples in time order."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_SAMPLE = struct.Struct("<d")


def encode_write_request(series: Iterable[Series]) -> bytes:
    """The ``WriteRequest`` protobuf of ``series``."""
    out = bytearray()
    for labels, samples in series:
        ts = bytearray()
        for name, value in labels:
            ts += _field(1, _field(1, name.encode()) + _field(2, value.encode()))
        for t, v in samples:
            ms = round(t * 1000)
            body = b"\x09" + _SAMPLE.pack(v) + b"\x10" + _varint(ms & 0xFFFFFFFFFFFFFFFF)
            ts += _field(2, body)
        out += _field(1, bytes(ts))
    return bytes(out)


def snappy_literal(data: bytes) -> bytes:
    """``data`` in the snappy block format, as literal elements only (no compression).

    >>> snappy_literal(b"abc")
    b'\\x03\\x08abc'
    """
    out = bytearray(_varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start:start + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 1 << 8:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + struct.pack("<H", n)
        out += chunk
    return bytes(out)


def remote_write(url: str, series: Sequence[Series], batch_samples: int = 200_000, timeout: float = 120.0) -> None:
    """POST ``series`` to ``<url>/api/v1/write`` in requests of about ``batch_samples`` samples."""
    batch: list[Series] = []
    size = 0

    def flush() -> None:
        body = snappy_literal(encode_write_request(batch))
        request = urllib.request.Request(f"{url.rstrip('/')}/api/v1/write", data=body, method="POST", headers={
            "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0"})
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            if resp.status // 100 != 2:
                raise RuntimeError(f"remote write answered {resp.status}: {resp.read()[:500]!r}")

    for s in series:
        batch.append(s)
        size += len(s[1])
        if size >= batch_samples:
            flush()
            batch, size = [], 0
    if batch:
        flush()
