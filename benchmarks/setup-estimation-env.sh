#!/usr/bin/env bash
# Creates the estimation benchmark's own environment: NannyML 0.13.1 (the comparison baseline) needs pandas<3 and
# statsmodels, which the project's .venv must not get. Idempotent; prints the venv's python path on the last line.
#
#   benchmarks/setup-estimation-env.sh            # -> ~/.cache/otel-ml/bench-venv
#   BENCH_VENV=/tmp/venv benchmarks/setup-estimation-env.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BENCH_VENV:-$HOME/.cache/otel-ml/bench-venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "nannyml==0.13.1" "pandas<3" statsmodels "scikit-learn>=1.5,<2" skops matplotlib
# otel-ml itself, editable, with the dependencies the estimators need (already satisfied above except the OTel pins).
"$venv/bin/python" -m pip install --quiet -e "$repo"
echo "$venv/bin/python"
