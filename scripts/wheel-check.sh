#!/usr/bin/env bash
# Builds the wheel as a user would (`python -m build`: sdist first, the wheel
# from the unpacked sdist), installs it into a clean virtualenv in a temp
# folder outside the checkout, and smoke-tests it from another temp folder
# (scripts/wheel_smoke.py): `hookkeeper dev` answers gRPC health, serves
# GraphiQL (the page and an asset) and one mutation through the gateway.
# Usage: wheel-check.sh PYTHON  (the checkout's venv python, which has `build`)
set -euo pipefail
checkout=$(cd "$(dirname "$0")/.." && pwd)
build_python=${1:-$checkout/.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/hookkeeper-wheel-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$build_python" -m build --outdir "$work/dist" "$checkout" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; exit 1; }
wheel=$(ls "$work"/dist/hookkeeper-*.whl)
echo "wheel-check: built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

# The base interpreter, not the checkout's venv: nothing of the checkout leaks in.
base_python=$("$build_python" -c 'import sys; print(sys._base_executable)')
"$base_python" -m venv "$work/venv"
# A current pip first, as `make install` does: the interpreter's bundled pip
# may fail to resolve the OpenTelemetry instrumentation versions.
{ "$work/venv/bin/python" -m pip install -q --upgrade pip \
  && "$work/venv/bin/python" -m pip install -q "$wheel"; } >"$work/install.log" 2>&1 \
  || { grep -v "^WARNING: Location" "$work/install.log" >&2
       echo "wheel-check: the wheel did not install" >&2; exit 1; }
echo "wheel-check: installed into a clean virtualenv in $work"

mkdir "$work/run"
cd "$work/run"
env -u PYTHONPATH -u VIRTUAL_ENV HOME="$work/run" PATH="$work/venv/bin:/usr/bin:/bin" \
  "$work/venv/bin/python" -I "$checkout/scripts/wheel_smoke.py" "$checkout"
