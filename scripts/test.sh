#!/usr/bin/env bash
# Installs what the tests need (Python packages, the Fashion-MNIST Debian package, PostgreSQL),
# runs them, and stops the services it started. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
python -m pip install -q -e ".[test]"
python -m pytest -q "$@"
