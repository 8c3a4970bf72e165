#!/usr/bin/env bash
# Build the otel-ml collector with OCB into a cache keyed by the manifest and Go version.
# Idempotent: when the cached binary exists it only prints its path. Prints the binary path on the last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
manifest="$root/collector-config/builder-config.yaml"
ocb_version=v0.159.0
cache="${OTEL_ML_CACHE:-$HOME/.cache/otel-ml}"
key=$( (cat "$manifest"; echo "$ocb_version"; go version) | sha256sum | cut -c1-16)
out="$cache/otelcol/$key"
bin="$out/otelcol-ml"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi
mkdir -p "$cache/bin" "$out"
if [ ! -x "$cache/bin/builder-$ocb_version" ]; then
  echo "installing OCB $ocb_version" >&2
  GOBIN="$cache/bin" go install "go.opentelemetry.io/collector/cmd/builder@$ocb_version" >&2
  mv "$cache/bin/builder" "$cache/bin/builder-$ocb_version"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s#output_path: .*#output_path: $work/src#" "$manifest" > "$work/manifest.yaml"
echo "building collector into $out (first build takes several minutes)" >&2
"$cache/bin/builder-$ocb_version" --skip-strict-versioning --config="$work/manifest.yaml" >&2
cp "$work/src/otelcol-ml" "$bin.tmp" && mv "$bin.tmp" "$bin"
ln -sfn "$out" "$cache/otelcol/current"
echo "$bin"
