"""The transfer study: a confirmed study's patterns scaled up and trained fully with
`skipnas train`, as a user would, then compared with the study's own ranking.

    python scripts/transfer.py run CONFIG       # resumable: run it again after a stop
    python scripts/transfer.py publish CONFIG   # tables, figure and numbers for the README

Each (pattern, seed) run writes runs/NAME-seedS/{spec.json, weights.pt, result.json}; a run
with result.json is done, one with only a checkpoint resumes mid-epoch.
"""
from __future__ import annotations

import sys

from nas.errors import UserError
from nas.search.experiment.transfer import TransferConfig, export_specs, train_all


def run(config: str) -> None:
    """Train every (pattern, seed) of the config not yet done; first check that each pattern
    was confirmed in the source study (what the publication compares with)."""
    from nas.results.transfer import source_numbers

    cfg = TransferConfig.load(config)
    export_specs(cfg)
    source_numbers(cfg)
    train_all(cfg)


def publish(config: str) -> None:
    """summary.json and transfer.png in the study's folder; print the README's numbers."""
    from nas.results.report import write_png
    from nas.results.transfer import source_numbers, summarise, tables, transfer_figure
    from nas.text_tables import markdown_table

    cfg = TransferConfig.load(config)
    confirmed, winner = source_numbers(cfg)
    summary = summarise(cfg, confirmed, winner)
    write_png(transfer_figure(summary), cfg.out / "transfer.png")
    patterns, versus = tables(summary)
    print(markdown_table(*patterns) + "\n\n" + markdown_table(*versus) + "\n")
    rho = summary.spearman
    print(f"- Spearman confirmed mean vs full-scale mean over {len(summary.rows)} patterns: "
          f"{rho.value:+.2f} {rho.interval('+.2f')} (bootstrap over seeds), one-sided exact "
          f"permutation p = {summary.spearman_p:.3f}; brief accuracy vs full-scale mean: "
          f"{summary.spearman_brief:+.2f}")
    print(f"- full scale, do the patterns differ at all: F test p = {summary.design.p_value:.3f} "
          f"(pooled seed std {summary.design.residual_std:.4f}, {summary.design.df} df)")
    print(f"- {summary.seconds_per_epoch:.0f} s per epoch (median, one thread a run); "
          f"{summary.run_hours:.2f} h of runs (one core each); "
          f"{summary.wall_hours:.2f} h wall clock")


if __name__ == "__main__":
    try:
        {"run": run, "publish": publish}[sys.argv[1]](*sys.argv[2:])
    except UserError as e:  # one line, no traceback, as the CLI does
        sys.exit(f"error: {e}")
