"""Build of the optional C extension (everything else is in pyproject.toml).

``otel_ml.processor._fastdecode`` is the decoder's fast path. It is optional: without a C compiler (or with
``OTEL_ML_NO_EXTENSION=1``) the install still succeeds, pure Python, with a clear warning here and at processor
start-up (the Python decoder gives the same results at ~8x the decode CPU). The source digest is compiled in so that
a stale build of an editable install is detected and not used (``otel_ml/processor/_native.py``). Wheels for the
platforms users run are built by cibuildwheel (``[tool.cibuildwheel]`` in pyproject.toml).
"""

import hashlib
import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCE = "otel_ml/processor/_fastdecode.c"
DIGEST = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()[:16]
WARNING = (
    "\n*** otel-ml: the C decoder (otel_ml.processor._fastdecode) was not built ({reason}).\n"
    "*** The install works in pure Python: the processor decodes with the Python path (same results, ~8x the decode\n"
    "*** CPU). For the fast path install a C compiler and the Python headers (Debian: apt-get install gcc\n"
    "*** python3-dev) and reinstall, or install a binary wheel built for your platform.\n"
)


class OptionalBuildExt(build_ext):
    """Builds the extension when it can; says clearly when it cannot (the install goes on)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers
            sys.stderr.write(WARNING.format(reason=f"{type(exc).__name__}: {exc}"))

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            sys.stderr.write(WARNING.format(reason=f"{type(exc).__name__}: {exc}"))


extensions = [] if os.environ.get("OTEL_ML_NO_EXTENSION", "") not in ("", "0") else [Extension(
    "otel_ml.processor._fastdecode", [SOURCE], define_macros=[("OTEL_ML_SOURCE_HASH", f'"{DIGEST}"')],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
)]
setup(ext_modules=extensions, cmdclass={"build_ext": OptionalBuildExt})
