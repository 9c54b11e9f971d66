"""The controlled principle study: matched pairs from a built benchmark, the widest of them
trained again at a higher fidelity with seeds of their own (resumable), then published.

    python scripts/principle_controlled.py run CONFIG
    python scripts/principle_controlled.py publish CONFIG
"""
from __future__ import annotations

import sys

from optuna.trial import TrialState

from nas.errors import UserError
from nas.results.principle_controlled import ControlledConfig
from nas.search.config import load_config
from nas.search.experiment.transfer import train_all
from nas.search.record import TrialRecord
from nas.search.storage.backends import load_study


def source_trials(source: str) -> dict[str, int]:
    """A completed trial number of each pattern hash of the source study."""
    cfg = load_config(source)
    study = load_study(cfg.name, cfg.storage_url)
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        digest = TrialRecord.from_trial(t).hash
        if digest is not None:
            out.setdefault(digest, t.number)
    return out


def run(config: str) -> None:
    """Train the widest pairs' patterns at the higher fidelity (what is not done yet)."""
    cfg = ControlledConfig.load(config)
    train_all(cfg.with_patterns(source_trials(cfg.higher.source)))


def publish(config: str) -> None:
    """summary numbers, pairs.png and the pair table for the README."""
    from nas.results.principle_controlled import (
        higher_accuracies,
        pair_table,
        pairs_figure,
        result_lines,
        summarise,
    )
    from nas.results.report import write_png
    from nas.text_tables import markdown_table

    cfg = ControlledConfig.load(config)
    summary = summarise(cfg, higher_accuracies(cfg))
    write_png(pairs_figure(summary), cfg.out / "pairs.png")
    print(markdown_table(*pair_table(summary)) + "\n")
    for line in result_lines(summary):
        print(f"- {line}")


if __name__ == "__main__":
    try:
        {"run": run, "publish": publish}[sys.argv[1]](*sys.argv[2:])
    except UserError as e:  # one line, no traceback, as the CLI does
        sys.exit(f"error: {e}")
