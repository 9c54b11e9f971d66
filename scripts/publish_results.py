"""Write a study's published results into a folder: analyze.json, report.html and
accuracy_vs_mean_distance.png; print the markdown tables for its README.

    python scripts/publish_results.py NAME STORAGE_URL OUT_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from nas.analysis import analyze
from nas.report import figures, write_png, write_report
from nas.study import load_study


def tables(result: dict) -> str:
    lines = ["| template | seeds | accuracy (mean ± std) | connections | MBD | mean distance |",
             "|---|---|---|---|---|---|"]
    for t in result["templates"]:
        lines.append(f"| {t['template']} | {t['seeds']} | {t['accuracy_mean']:.4f} ± "
                     f"{t['accuracy_std']:.4f} | {t['connections']} | {t['mbd']} | "
                     f"{t['mean_distance']:.3f} |")
    lines += ["", "| distance | method | controlled for | r | 95% CI | p (permutation) | n |",
              "|---|---|---|---|---|---|---|"]
    for c in result["correlations"]:
        lines.append(f"| {c['against']} | {c['method']} | {c['controlled_for'] or '-'} | "
                     f"{c['r']:+.3f} | [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | "
                     f"{c['p_value']:.4f} | {c['n']} |")
    return "\n".join(lines) + "\n"


def main(name: str, storage: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study = load_study(name, storage)
    result = analyze(study)
    (out / "analyze.json").write_text(json.dumps(result, indent=1) + "\n")
    write_report(study, out / "report.html", result)
    fig = dict(figures(study))["Accuracy vs. mean distance"]
    write_png(fig, out / "accuracy_vs_mean_distance.png")
    print(f"wrote {out}/analyze.json, report.html, accuracy_vs_mean_distance.png\n")
    print(tables(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
