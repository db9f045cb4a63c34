#!/usr/bin/env bash
# Installs the Debian packages Hookkeeper needs when they are missing.
#   ensure-system-deps.sh run    what `make run` needs: Python's venv, Node and npm
#   ensure-system-deps.sh test   that, plus what the tests need: headless Chromium
#                                (driven by Playwright's Python package over CDP;
#                                Playwright never downloads a browser of its own
#                                here) and chromium-driver
# grpcurl and buf come from their PyPI and npm packages (make install).
#
# Installing needs root (or password-less sudo). Without it, the missing
# packages are named with the command to install them; outside CI that is a
# warning (the browser test then skips with the same reason), under CI=true
# an error.
set -euo pipefail
purpose=${1:-test}
need=()
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "$purpose" = test ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi
if [ ${#need[@]} -eq 0 ]; then
  echo "ensure-system-deps ($purpose): ok"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "ensure-system-deps ($purpose): cannot install ${need[*]} without root;" \
       "run: sudo apt-get install ${need[*]}" >&2
  case "${CI:-}" in 1|true|TRUE|True|yes) exit 1 ;; esac
  exit 0
fi
echo "ensure-system-deps ($purpose): installing ${need[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
echo "ensure-system-deps ($purpose): ok"
