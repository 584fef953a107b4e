#!/usr/bin/env bash
# Installs promtool for the monitoring tests (tests/test_monitoring.py: `promtool check
# rules`, `promtool test rules`) from Debian's `prometheus` package (2.42 on bookworm), when
# it is missing. Installing the package starts no server here (no systemd); the tests only
# run promtool, offline. Idempotent: nothing happens when promtool is already on PATH.
set -euo pipefail

if command -v promtool >/dev/null; then
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "promtool: missing; run as root (apt-get install prometheus)" >&2; exit 1; }
echo "promtool: installing Debian's prometheus package (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends prometheus >&2 \
  || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends prometheus >&2; }
command -v promtool >/dev/null
