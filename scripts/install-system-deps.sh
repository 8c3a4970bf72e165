#!/usr/bin/env bash
# Install Prometheus and Alertmanager (with promtool/amtool), PostgreSQL (the tests create throwaway clusters with
# its initdb; no service is started) and openssl (the TLS tests make their certificates with it) from Debian's
# packages when missing. Idempotent.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  # The Debian packages start system services where an init system exists; the tests start their own instances.
fi
command -v promtool >/dev/null && command -v amtool >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null \
  && command -v openssl >/dev/null
