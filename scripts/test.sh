#!/usr/bin/env bash
# Installs what the tests need (Python packages; Debian's Fashion-MNIST, PostgreSQL, Chromium),
# starts a throwaway PostgreSQL server on loopback for the multi-worker tests, runs the suite, and stops
# the server at the end. CI (.ci/run) calls exactly this.
#   bash scripts/test.sh --fast     the quick loop: every test not marked slow (about 2 min)
#   bash scripts/test.sh -k NAME    anything else goes to pytest
set -euo pipefail
fast=()
if [ "${1:-}" = "--fast" ]; then shift; fast=(-m "not slow"); fi
cd "$(dirname "$0")/.."

need=()
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)   # the report's browser test
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
python -m pip install -q -e ".[test]" -c constraints.txt   # the tested versions (scripts/lock.py)

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_data=$(mktemp -d /tmp/skipnas-pg.XXXXXX)
chown postgres "$pg_data"
as_pg() { runuser -u postgres -- "$@"; }
stop_pg() { as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$pg_data"; }
trap stop_pg EXIT
as_pg "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres >/dev/null
port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w \
  -o "-p $port -k $pg_data -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
export SKIPNAS_TEST_POSTGRES="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"

ruff check .            # lint (config in pyproject.toml)
mypy                    # types of nas/ and search_spaces/
python -m pytest -q "${fast[@]}" "$@"
