#!/usr/bin/env bash
# The instrumentation SDK against the oldest and the newest supported OpenTelemetry releases, each in its own
# virtualenv with the base install (otel-ml[grpc]: the OpenTelemetry API, no SDK, no protobuf at run time) plus
# what the tests need (constraints/api-only-tests.txt). Idempotent and cached: a stamp keyed by pyproject.toml,
# setup.py and the constraints skips pip when nothing changed. Runs tests/instrumentation in both; extra arguments
# go to pytest. Usage: scripts/test-otel-matrix.sh [oldest|newest|all] [pytest args]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
which=all
case "${1:-}" in oldest|newest|all) which=$1; shift ;; esac
envs=(oldest newest)
[ "$which" = all ] || envs=("$which")

setup_env() {  # setup_env NAME -> prints the venv path
  local name=$1 venv="$root/.venv-otel-$1"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  local key
  key=$(cat pyproject.toml setup.py "constraints/otel-$name.txt" constraints/api-only-tests.txt | sha256sum | cut -c1-16)
  if [ ! -f "$venv/.otel-ml-$key" ]; then
    echo "test-otel-matrix: installing the $name OpenTelemetry environment ($venv)" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip >&2
    # the tree itself is put on the path (no rebuild of the processor's C extension); its declared base
    # dependencies are installed from pyproject.toml, pinned by the constraints
    OTEL_ML_NO_EXTENSION=1 "$venv/bin/python" -m pip install -q --disable-pip-version-check \
      -c "constraints/otel-$name.txt" -e ".[grpc]" -r constraints/api-only-tests.txt >&2
    rm -f "$venv"/.otel-ml-*
    touch "$venv/.otel-ml-$key"
  fi
  echo "$venv"
}

rc=0
for name in "${envs[@]}"; do
  venv=$(setup_env "$name")
  versions=$("$venv/bin/python" -c 'import importlib.metadata as m; print(" ".join(f"{d}=={m.version(d)}" for d in ("opentelemetry-api", "opentelemetry-sdk")))')
  echo "== tests/instrumentation with the $name OpenTelemetry ($versions)"
  # -p no:cacheprovider: the main suite's cache stays the main suite's
  set +e
  "$venv/bin/python" -m pytest -p no:cacheprovider -q tests/instrumentation "$@"
  status=$?
  set -e
  [ "$status" -eq 0 ] || rc=$status
done
exit "$rc"
