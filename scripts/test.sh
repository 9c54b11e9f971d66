#!/usr/bin/env bash
# Installs what the tests need, then runs them. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test]"
python -m pytest -q "$@"
