#!/usr/bin/env bash
# Makes sure a Redis server answers on 127.0.0.1:6379 (the gateway's shared
# rate limits and their tests): starts the machine's redis-server when it is
# installed but stopped, or installs Debian's package first. A throw-away
# server: no snapshots, no append-only file. Exits non-zero if Redis still
# cannot be reached.
set -euo pipefail
ready() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if ready; then
  echo "ensure-redis: Redis is up"
  exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-redis: redis-server is not installed and installing it needs root" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
for _ in $(seq 1 30); do ready && break; sleep 0.2; done
if ! ready; then
  echo "ensure-redis: Redis is not reachable on 127.0.0.1:6379" >&2
  exit 1
fi
echo "ensure-redis: Redis is up"
