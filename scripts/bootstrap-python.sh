#!/usr/bin/env bash
# Create .venv and install otel-ml with the given extras (default: test). Idempotent: a stamp keyed by
# pyproject.toml, setup.py, the C extension's source and the extras skips pip when nothing changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
extras="${1:-test}"
venv="${OTEL_ML_VENV:-$root/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.otel-ml-$extras-$(cat "$root/pyproject.toml" "$root/setup.py" "$root/otel_ml/processor/_fastdecode.c" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[$extras]" >&2
  touch "$stamp"
fi
echo "$venv"
