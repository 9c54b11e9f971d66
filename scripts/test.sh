#!/usr/bin/env bash
# Installs what the tests need (Debian's Fashion-MNIST, PostgreSQL and Chromium when missing,
# which needs root; the Python packages into the virtual environment .venv), starts a throwaway
# PostgreSQL server on loopback for the multi-worker tests, runs the suite, and stops the server
# at the end. CI (.ci/run) calls exactly this. As root the server runs as the postgres user;
# as another user (the Debian packages already there) it runs as that user.
#   bash scripts/test.sh --fast     the quick loop: every test not marked slow (about 2.5 min)
#   bash scripts/test.sh -k NAME    anything else goes to pytest (-n 0: in one process)
set -euo pipefail
fast=()
if [ "${1:-}" = "--fast" ]; then shift; fast=(-m "not slow"); fi
cd "$(dirname "$0")/.."
source scripts/env.sh

need=()
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)   # the report's browser test
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)   # Debian's python3 needs it for .venv
install_debs "${need[@]}"
make_venv test
python=.venv/bin/python

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_data=$(mktemp -d /tmp/skipnas-pg.XXXXXX)
if [ "$(id -u)" = 0 ]; then   # initdb refuses root: the server runs as the postgres user
  chown postgres "$pg_data"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi
stop_pg() { as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$pg_data"; }
trap stop_pg EXIT
as_pg "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres >/dev/null
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w \
  -o "-p $port -k $pg_data -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
export SKIPNAS_TEST_POSTGRES="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
# Optuna's tables, made once here: two test processes creating them at once could collide.
"$python" -c 'import os, optuna; optuna.storages.RDBStorage(os.environ["SKIPNAS_TEST_POSTGRES"])'

"$python" -m ruff check .       # lint (config in pyproject.toml)
"$python" -m mypy               # types of nas/ and search_spaces/
# Two test processes (pytest-xdist), each module on one of them (its fixtures built once), each
# training on one thread: many tests wait on heartbeats and subprocesses, so two overlap well.
OMP_NUM_THREADS=1 "$python" -m pytest -q -n 2 --dist loadscope "${fast[@]}" "$@"
