#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on HOOKKEEPER_TEST_POSTGRES_URL's host
# (default 127.0.0.1:5432): starts the machine's cluster, or installs Debian's
# PostgreSQL when there is none. Exits non-zero if it still cannot be reached.
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! command -v pg_isready >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! ready; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do ready && break; sleep 1; done
fi
if ! ready; then
  echo "ensure-postgres: PostgreSQL is not reachable on 127.0.0.1:5432" >&2
  exit 1
fi
# Trust auth for the postgres user is what the tests expect on this machine.
psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null
echo "ensure-postgres: PostgreSQL is up"
