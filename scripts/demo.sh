#!/usr/bin/env bash
# The main job on a fresh machine: install otel-ml into .venv (cached) and run the demo on embedded defaults.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$("$root/scripts/bootstrap-python.sh" processor)
exec "$venv/bin/otel-ml" demo "$@"
