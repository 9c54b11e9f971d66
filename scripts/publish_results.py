"""Write a study's published results into a folder: analyze.json, report.html and
accuracy_vs_mean_distance.png; print the markdown tables for its README.

    python scripts/publish_results.py NAME STORAGE_URL OUT_DIR
"""
from __future__ import annotations

import sys

from nas.results.analysis import correlation_table, template_table
from nas.results.report import publish_study
from nas.search.storage.backends import load_study
from nas.text_tables import markdown_table


def main(name: str, storage: str, out: str) -> None:
    result = publish_study(load_study(name, storage), out)
    print(f"wrote {out}/analyze.json, report.html, accuracy_vs_mean_distance.png\n")
    print(markdown_table(*template_table(result.principle)) + "\n")
    print(markdown_table(*correlation_table(result.principle)))


if __name__ == "__main__":
    main(*sys.argv[1:])
