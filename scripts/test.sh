#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (Python deps in .venv, Prometheus and
# Alertmanager from Debian, the OCB-built collector in ~/.cache/otel-ml), then runs lint, types, generated-file
# freshness, unit and integration tests, and then (full runs only) tests/instrumentation again in two API-only
# environments, on the oldest and the newest supported OpenTelemetry (scripts/test-otel-matrix.sh; cached venvs,
# about 2 x 1 min warm, 2 x 2-3 min to build cold). Idempotent and cached. Extra arguments go to pytest (and skip
# the matrix; run it alone with scripts/test-otel-matrix.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/bootstrap-python.sh test)
scripts/install-system-deps.sh
OTEL_ML_OTELCOL=$(scripts/build-collector.sh | tail -n1)
export OTEL_ML_OTELCOL
export PATH="$venv/bin:$PATH"
set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
if [ "$#" -eq 0 ]; then
  set +e
  scripts/test-otel-matrix.sh
  matrix=$?
  set -e
  [ "$rc" -ne 0 ] || rc=$matrix
fi
exit "$rc"
