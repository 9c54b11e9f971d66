#!/usr/bin/env bash
# The main job on the default real data: installs what it needs (Fashion-MNIST from Debian's
# dataset-fashion-mnist when it is missing, which needs root; skipnas into the virtual
# environment .venv), runs the quickstart study beside log and nearest, confirms its top patterns
# and both templates with 3 seeds (about 2.5 min in all on 2 CPU cores, the install aside;
# running it again resumes), prints the analysis and which pattern to train, writes the HTML
# report and exports the pattern the answer names. Without root: have the Debian package
# installed, or Fashion-MNIST's IDX files in $SKIPNAS_DATA/fashion-mnist. A
# studies/quickstart.db made before the quickstart's stem stride became 4 (2026-11-30) is
# refused, the difference named: move it aside.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
python3 -c 'import ensurepip' 2>/dev/null || install_debs python3-venv   # Debian's python3 needs it for .venv
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${SKIPNAS_DATA:-}" ]; then
  install_debs dataset-fashion-mnist || {
    echo "skipnas: or, without root, put Fashion-MNIST's IDX files in" \
         "\$SKIPNAS_DATA/fashion-mnist and set SKIPNAS_DATA." >&2
    exit 1
  }
fi
make_venv
skipnas=.venv/bin/skipnas
"$skipnas" study start studies/quickstart.toml "$@"
"$skipnas" confirm studies/quickstart.toml
"$skipnas" analyze quickstart
"$skipnas" report quickstart --out studies/quickstart_report.html
"$skipnas" export quickstart --pattern answer --out studies/quickstart_best.json
cat <<EOF

Done. Open studies/quickstart_report.html in a browser (it works offline); the pattern to train
is in studies/quickstart_best.json (\`$skipnas train studies/quickstart_best.json --help\`);
\`$skipnas dashboard quickstart\` serves the study on http://127.0.0.1:8080.
EOF
