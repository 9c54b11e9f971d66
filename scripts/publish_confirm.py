"""Publish a confirmed study (studies/confirm_fashion_mnist.toml by default): analyze.json
(with its evidence), report.html, confirmed.png and accuracy_vs_mean_distance.png in the
study's results folder; print the confirmed table and the numbers its README quotes.

    python scripts/publish_confirm.py [CONFIG]
"""
from __future__ import annotations

import sys
from pathlib import Path

from nas.results.analysis import confirmed_table, evidence_lines
from nas.results.report import confirmed_figure, publish_study, write_png
from nas.search.config import load_config
from nas.search.experiment.evidence import Evidence, answer
from nas.search.storage.backends import load_study
from nas.stats import spearman
from nas.text_tables import markdown_table


def top_overlap(ev: Evidence, k: int) -> int:
    """How many of the brief top ``k`` confirmed search patterns stay in the confirmed top k."""
    searched = [c for c in ev.confirmed if c.repeat_of is not None]
    brief = {c.hash for c in sorted(searched, key=lambda c: -c.brief)[:k]}
    confirmed = {c.hash for c in sorted(searched, key=lambda c: -c.mean.mean.value)[:k]}
    return len(brief & confirmed)


def main(config: str = "studies/confirm_fashion_mnist.toml") -> None:
    cfg = load_config(config)
    out = Path(cfg.storage_url.removeprefix("sqlite:///")).parent
    study = load_study(cfg.name, cfg.storage_url)
    ev = publish_study(study, out).evidence
    write_png(confirmed_figure(ev), out / "confirmed.png")
    searched = [c for c in ev.confirmed if c.repeat_of is not None]
    print(f"wrote {out}/analyze.json, report.html, confirmed.png, "
          f"accuracy_vs_mean_distance.png\n")
    print(markdown_table(*confirmed_table(ev)) + "\n")
    for line in evidence_lines(ev):
        print(f"- {line}")
    print(f"- brief top 5 in the confirmed top 5: {top_overlap(ev, 5)} of 5 "
          f"({len(searched)} search patterns confirmed)")
    print(f"- Spearman of brief accuracy and confirmed mean over them: "
          f"{spearman([c.brief for c in searched], [c.mean.mean.value for c in searched]):+.3f}")
    print(f"- answer: {answer(ev).sentence}")
    sel = ev.selection
    if sel is not None:
        print(f"- seeds as blocks: pooled seed std {sel.residual_std:.4f} ({sel.df} df); "
              f"do the confirmed patterns differ at all: F test p = {sel.omnibus_p:.3f}")
        for v in sel.versus:
            print(f"- {sel.searched} vs {v.template}: {v.diff.diff.value:+.4f} "
                  f"{v.diff.diff.interval('+.4f')}, Holm {v.holm.interval('+.4f')} "
                  f"(Holm p = {v.holm_p:.3f})")
        print(f"- lead over the best template: {sel.naive_lead:+.4f} naive (picked and "
              f"measured on every seed), {sel.cross_fit_lead:+.4f} picked and measured on "
              f"separate halves of the seeds")


if __name__ == "__main__":
    main(*sys.argv[1:])
