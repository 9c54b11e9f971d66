"""Publish the depth study (studies/principle_depth_L*.toml and principle_styles_3x12.toml):
each study's results in OUT_DIR/<study>/ (as publish_results.py writes them), then the summary
across depths: depth.json and depth.png (the figure); print the markdown tables for the README.

    python scripts/publish_depth.py STORAGE_URL OUT_DIR STUDY [STUDY ...]

One-block studies enter the depth summary; the others are published and tabulated alone.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from nas.results.analysis import correlation_table, template_table
from nas.results.depth import depth_figure, depth_summary, depth_table
from nas.results.report import publish_study, write_png
from nas.search.storage.backends import load_study
from nas.text_tables import markdown_table


def main(storage: str, out_dir: str, *names: str) -> None:
    out = Path(out_dir)
    results = []
    for name in names:
        principle = publish_study(load_study(name, storage), out / name).principle
        print(f"## {name}: {out / name}\n")
        print(markdown_table(*template_table(principle)) + "\n")
        print(markdown_table(*correlation_table(principle)) + "\n")
        if principle.layers is not None and len(principle.layers) == 1:
            results.append(principle)
    summary = depth_summary(results)
    (out / "depth.json").write_text(json.dumps(summary.to_json(), indent=1) + "\n")
    write_png(depth_figure(summary), out / "depth.png", width=1100, height=480)
    slope = summary.gap_slope
    print(f"## across depths: {out}/depth.json, depth.png\n")
    print(markdown_table(*depth_table(summary)) + "\n")
    print(f"gap slope per doubling of L: {slope.value:+.4f}, 95% CI {slope.interval('+.4f')}")


if __name__ == "__main__":
    main(*sys.argv[1:])
