"""Build of the optional C extension (everything else is in pyproject.toml).

``otel_ml.processor._fastdecode`` is the decoder's fast path. It is optional: without a C compiler (or with
``OTEL_ML_NO_EXTENSION=1``) the install still succeeds, pure Python, with a clear warning here and at processor
start-up (the Python decoder gives the same results at ~8x the decode CPU). The source digest is compiled in so that
a stale build of an editable install is detected and not used (``otel_ml/processor/_native.py``). Wheels for the
platforms users run are built by cibuildwheel (``[tool.cibuildwheel]`` in pyproject.toml).
"""

import hashlib
import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
ASSETS = {  # keep in step with otel_ml.generate.ASSETS
    "dashboards": "*.dashboard.py",
    "alerts": "config.yaml",
    "grafana/provisioning/dashboards": "*.yaml",
    "grafana/provisioning/datasources": "*.yaml",
    "grafana/provisioning/alerting": "otel-ml-contact-points.yaml",
}

SOURCE = "otel_ml/processor/_fastdecode.c"
DIGEST = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()[:16]
WARNING = (
    "\n*** otel-ml: the C decoder (otel_ml.processor._fastdecode) was not built ({reason}).\n"
    "*** The install works in pure Python: the processor decodes with the Python path (same results, ~8x the decode\n"
    "*** CPU). For the fast path install a C compiler and the Python headers (Debian: apt-get install gcc\n"
    "*** python3-dev) and reinstall, or install a binary wheel built for your platform.\n"
)


REQUIRED = os.environ.get("OTEL_ML_REQUIRE_EXTENSION", "") not in ("", "0")
"""Binary wheels (cibuildwheel) fail instead of shipping a platform wheel without its extension."""


class OptionalBuildExt(build_ext):
    """Builds the extension when it can; says clearly when it cannot (the install goes on)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers
            if REQUIRED:
                raise
            sys.stderr.write(WARNING.format(reason=f"{type(exc).__name__}: {exc}"))

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRED:
                raise
            sys.stderr.write(WARNING.format(reason=f"{type(exc).__name__}: {exc}"))


class BuildPyWithAssets(build_py):
    """Also copies the repository files ``otel-ml generate`` reads into ``otel_ml/_assets`` of the build (so that an
    installed wheel can generate rules and dashboards; the repository files stay the one source)."""

    def run(self) -> None:
        super().run()
        for folder, pattern in ASSETS.items():
            if not any((ROOT / folder).glob(pattern)):
                sys.stderr.write(f"*** otel-ml: {folder}/{pattern} is missing from this source tree: "
                                 "`otel-ml generate --out` will not work from this build\n")
            for src in sorted((ROOT / folder).glob(pattern)):
                dst = Path(self.build_lib) / "otel_ml" / "_assets" / folder / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)


extensions = [] if os.environ.get("OTEL_ML_NO_EXTENSION", "") not in ("", "0") else [Extension(
    "otel_ml.processor._fastdecode", [SOURCE], define_macros=[("OTEL_ML_SOURCE_HASH", f'"{DIGEST}"')],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
)]
setup(ext_modules=extensions, cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithAssets})
