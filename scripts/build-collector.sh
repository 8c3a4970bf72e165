#!/usr/bin/env bash
# Build the otel-ml collector with OCB into a cache keyed by the manifest, this script and the Go version.
# Idempotent: when the cached binary exists it only prints its path. Prints the binary path on the last line.
#
# routingconnector: the Go module proxy refuses the source of every release after v0.157.0 (403 "This module version
# is not available."), and v0.157.0 does not compile against pkg/ottl v0.159.0, which the v0.159.0 components
# require: `undefined: ottlfuncs.NewIsRootSpanFactoryNew` (ottl v0.159.0 renamed it to NewIsRootSpanFactory when the
# pointer-based transform contexts became the only ones). We therefore build routingconnector v0.157.0 from the
# proxy's own source zip with that one call renamed, wired in with an OCB `replaces` entry. Nothing else is changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
manifest="$root/collector-config/builder-config.yaml"
ocb_version=v0.159.0
routing_module=github.com/open-telemetry/opentelemetry-collector-contrib/connector/routingconnector
routing_version=v0.157.0
cache="${OTEL_ML_CACHE:-$HOME/.cache/otel-ml}"
key=$( (cat "$manifest" "$0"; echo "$ocb_version"; go version) | sha256sum | cut -c1-16)
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

# routingconnector v0.157.0 with the one-line rename for pkg/ottl v0.159.0 (see the header).
patched="$out/routingconnector-$routing_version-ottl-v0.159"
if [ ! -f "$patched/go.mod" ]; then
  src=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "$routing_module@$routing_version" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || { echo "could not download $routing_module@$routing_version" >&2; exit 1; }
  rm -rf "$patched.tmp" && cp -r "$src" "$patched.tmp" && chmod -R u+w "$patched.tmp"
  sed -i 's/ottlfuncs\.NewIsRootSpanFactoryNew()/ottlfuncs.NewIsRootSpanFactory()/' "$patched.tmp/functions.go"
  grep -q 'ottlfuncs.NewIsRootSpanFactory()' "$patched.tmp/functions.go"
  mv "$patched.tmp" "$patched"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s#output_path: .*#output_path: $work/src#" -e "s#@ROUTINGCONNECTOR_PATCHED_DIR@#$patched#" \
  "$manifest" > "$work/manifest.yaml"
echo "building collector into $out (first build takes several minutes)" >&2
"$cache/bin/builder-$ocb_version" --skip-strict-versioning --config="$work/manifest.yaml" >&2
cp "$work/src/otelcol-ml" "$bin.tmp" && mv "$bin.tmp" "$bin"
ln -sfn "$out" "$cache/otelcol/current"
echo "$bin"
