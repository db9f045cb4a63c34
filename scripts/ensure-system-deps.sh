#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing.
set -euo pipefail
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
# Headless browser for the GraphiQL test (driven by Playwright's Python
# package over CDP; Playwright never downloads a browser of its own here).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "ensure-system-deps: ok"
