"""Loads the C fast path of the decoder (``otel_ml.processor._fastdecode``) when it is built and up to date.

The extension is optional: without a C compiler at install time (or with ``OTEL_ML_PURE_PYTHON=1``) the processor
decodes with the Python path, which gives the same results, only slower (``benchmarks/README.md``). A build that
does not match its source file (an editable install whose ``_fastdecode.c`` changed since it was compiled) is not
used: ``pip install -e .`` rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

DISABLE_ENV = "OTEL_ML_PURE_PYTHON"
SOURCE = Path(__file__).with_name("_fastdecode.c")


def source_hash(path: Path = SOURCE) -> str:
    """The digest ``setup.py`` compiles into the extension (``SOURCE_HASH``)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None, f"Python decoder ({DISABLE_ENV} is set)"
    try:
        from otel_ml.processor import _fastdecode  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, (f"Python decoder: the C extension is not built ({exc}); the results are the same at ~8x the "
                      "decode CPU. Install a binary wheel for this platform, or a C compiler and the Python headers "
                      f"then reinstall (or set {DISABLE_ENV}=1 to choose the Python decoder and silence this)")
    if SOURCE.exists() and source_hash() != _fastdecode.SOURCE_HASH:
        return None, "Python decoder (the C extension is older than _fastdecode.c: run `pip install -e .`)"
    return _fastdecode, "C fast-path decoder"


decoder, status = _load()
"""The extension module (or None) and a one-line description for the startup log."""

degraded = decoder is None and os.environ.get(DISABLE_ENV, "") in ("", "0")
"""The C decoder is missing without being switched off: the startup log says so at WARNING, with the fix."""


def configure(conf: dict[str, Any]) -> None:
    """Pass the names and caches of :mod:`otel_ml.processor.decode` to the extension."""
    if decoder is not None:
        decoder.configure(conf)
