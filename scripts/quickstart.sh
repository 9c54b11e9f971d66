#!/usr/bin/env bash
# The main job on the default real data: installs what it needs (Fashion-MNIST from Debian's
# dataset-fashion-mnist, the skipnas package), runs the quickstart study (~2 min on 2 CPU cores
# with bf16, ~5 without; running it again resumes), confirms its top patterns and log with fresh
# seeds (~1 min with bf16, ~2.5 without), prints
# the principle analysis, writes the HTML report and exports the confirmed winner.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${SKIPNAS_DATA:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist, or put its IDX files" \
         "in \$SKIPNAS_DATA/fashion-mnist" >&2
    exit 1
  fi
fi
python -m pip install -q -e . -c constraints.txt   # the tested versions (scripts/lock.py)
skipnas study start studies/quickstart.toml "$@"
skipnas confirm studies/quickstart.toml
skipnas analyze quickstart
skipnas report quickstart --out studies/quickstart_report.html
skipnas export quickstart --out studies/quickstart_best.json
