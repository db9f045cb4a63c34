#!/usr/bin/env bash
# Regenerates the Python code for protos/hookkeeper into the folder given
# (default gen/). Generated code lives only there, apart from hand-written code.
set -euo pipefail
out="${1:-gen}"
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv/bin"
rm -rf "$out/hookkeeper"
mkdir -p "$out"
cd "$root"
protos=$(find protos/hookkeeper -name '*.proto' | sort)
PATH="$venv:$PATH" "$venv/python" -m grpc_tools.protoc -I protos \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" $protos
# The same files with their comments, for server reflection (grpcurl describe
# shows them); the compiled-in descriptors of *_pb2 carry no source info.
"$venv/python" -m grpc_tools.protoc -I protos --include_source_info \
  --descriptor_set_out="$out/hookkeeper/notifications/descriptors.binpb" $protos
# protoc writes no __init__.py. `hookkeeper` itself stays a namespace package
# (service/, gateway/ and gen/ each hold a portion of it); below it, regular
# packages keep mypy and hatch simple.
find "$out/hookkeeper" -mindepth 1 -type d -exec sh -c 'for d; do : > "$d/__init__.py"; done' sh {} +
