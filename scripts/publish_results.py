"""Write a study's published results into a folder: analyze.json, report.html and
accuracy_vs_mean_distance.png; print the markdown tables for its README.

    python scripts/publish_results.py NAME STORAGE_URL OUT_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from nas.results.analysis import analyze, correlation_table, template_table
from nas.results.report import figures, write_png, write_report
from nas.search.storage import load_study
from nas.tables import markdown_table


def main(name: str, storage: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study = load_study(name, storage)
    result = analyze(study)
    (out / "analyze.json").write_text(json.dumps(result, indent=1) + "\n")
    write_report(study, out / "report.html", result)
    fig = next(f.figure for f in figures(study) if f.id == "accuracy-vs-mean-distance")
    write_png(fig, out / "accuracy_vs_mean_distance.png")
    print(f"wrote {out}/analyze.json, report.html, accuracy_vs_mean_distance.png\n")
    print(markdown_table(*template_table(result)) + "\n")
    print(markdown_table(*correlation_table(result)))


if __name__ == "__main__":
    main(*sys.argv[1:])
