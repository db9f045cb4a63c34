#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing.
set -euo pipefail
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "ensure-system-deps: ok"
