"""Build of the optional C extension (everything else is in pyproject.toml).

``otel_ml.processor._fastdecode`` is the decoder's fast path; ``optional=True`` keeps the install working without a
C compiler (the processor then uses the Python path). The source digest is compiled in so that a stale build of an
editable install is detected and not used (``otel_ml/processor/_native.py``).
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "otel_ml/processor/_fastdecode.c"
DIGEST = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()[:16]

setup(ext_modules=[Extension(
    "otel_ml.processor._fastdecode", [SOURCE], define_macros=[("OTEL_ML_SOURCE_HASH", f'"{DIGEST}"')],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
    optional=True,
)])
