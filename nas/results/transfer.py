"""The transfer study: does the ranking of a brief search on a small network hold for the
scaled network trained fully? A confirmed study's patterns, scaled up and trained by
`skipnas train` (scripts/transfer.py runs them), compared with the study's own numbers."""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..search.experiment.transfer import TransferConfig
from ..stats import (
    BlockedDesign,
    Difference,
    Estimate,
    MeanCI,
    blocked_design,
    holm,
    holm_levels,
    mean_ci,
    spearman,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

BOOTSTRAP = 4000


@dataclass(frozen=True)
class FullRun:
    """One (pattern, seed) trained at full scale, as its result.json records it."""
    name: str
    seed: int
    hash: str
    test_accuracy: float
    epochs: int
    train_seconds: float
    wall_seconds: float
    params: int

    @classmethod
    def read(cls, path: Path) -> "FullRun":
        r = json.loads(path.read_text(encoding="utf-8"))
        return cls(r["name"], int(r["seed"]), r["pattern"], float(r["test_accuracy"]),
                   int(r["epochs"]), float(r["train_seconds"]), float(r["wall_seconds"]),
                   int(r["params"]))


@dataclass(frozen=True)
class Row:
    """A pattern at both scales."""
    name: str
    hash: str
    brief: float           # the search-fidelity accuracy it was chosen by (NaN: none)
    confirmed: MeanCI      # at the confirm stage's fidelity, the small network
    full: MeanCI           # test accuracy of the scaled network trained fully
    params: int            # of the scaled network


@dataclass(frozen=True)
class Comparison:
    """The confirmed winner minus another pattern at full scale, paired by seed."""
    other: str
    paired: Difference     # the seeds' own paired differences, t with seeds - 1 df
    pooled: Difference     # the blocked design's pooled variance
    holm: Estimate         # the pooled interval at Holm's level over the comparisons
    holm_p: float


@dataclass(frozen=True)
class TransferSummary:
    rows: tuple[Row, ...]                  # in the config's order
    seeds: tuple[int, ...]
    winner: str                            # the source study's best confirmed search pattern
    spearman: Estimate                     # confirmed mean vs full mean, bootstrap over seeds
    spearman_p: float                      # one-sided exact permutation p (rho >= observed)
    spearman_brief: float                  # brief accuracy vs full mean
    design: BlockedDesign                  # full scale: patterns x seeds
    comparisons: tuple[Comparison, ...]    # winner vs log, vs nearest
    seconds_per_epoch: float               # median over runs, one thread a run
    run_hours: float                       # the runs' wall times summed (one core each)
    wall_hours: float                      # first start to last finish of the runs


def read_runs(cfg: TransferConfig) -> dict[str, dict[int, FullRun]]:
    """The finished runs per pattern name and seed."""
    out: dict[str, dict[int, FullRun]] = {}
    for name, _ in cfg.patterns:
        for seed in cfg.seeds:
            path = cfg.run_dir(name, seed) / "result.json"
            if path.is_file():
                out.setdefault(name, {})[seed] = FullRun.read(path)
    return out


def _paired(a: np.ndarray, b: np.ndarray) -> Difference:
    """a - b paired by seed: the t-interval of the per-seed differences."""
    m = mean_ci(a - b)
    return Difference(m.mean, m.se, float(m.n - 1))


def bootstrap_spearman(small: np.ndarray, full: np.ndarray, resamples: int = BOOTSTRAP,
                       seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the Spearman between the pattern means of two patterns x
    seeds tables, the seeds of each resampled with replacement (the same draw for every
    pattern: seeds are blocks). It carries the seeds' noise, not the choice of patterns."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        a = small[:, rng.integers(0, small.shape[1], small.shape[1])].mean(axis=1)
        b = full[:, rng.integers(0, full.shape[1], full.shape[1])].mean(axis=1)
        r = spearman(a, b)
        if math.isfinite(r):
            values.append(r)
    if not values:  # every resample tied: no ranking to correlate
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def permutation_p(x: np.ndarray, y: np.ndarray) -> float:
    """Exact one-sided p of a Spearman at least the observed one, over every ordering of y."""
    observed = spearman(x, y)
    perms = [spearman(x, y[list(p)]) for p in itertools.permutations(range(len(y)))]
    return float(np.mean([r >= observed - 1e-12 for r in perms]))


def summarise(cfg: TransferConfig, confirmed: dict[str, tuple[str, float, tuple[float, ...]]],
              winner: str) -> TransferSummary:
    """The summary of the finished runs. ``confirmed``: per pattern name, its hash, brief
    accuracy and confirm-stage accuracies (one per confirm seed) in the source study;
    ``winner``: the name of its best confirmed search pattern. Patterns missing a seed are
    left out (never fewer seeds)."""
    done = read_runs(cfg)
    names = [n for n, _ in cfg.patterns if len(done.get(n, {})) == len(cfg.seeds)]
    full = np.array([[done[n][s].test_accuracy for s in cfg.seeds] for n in names])
    small = np.array([confirmed[n][2] for n in names])
    rows = tuple(Row(n, confirmed[n][0], confirmed[n][1], mean_ci(small[i], (0, 1)),
                     mean_ci(full[i], (0, 1)), done[n][cfg.seeds[0]].params)
                 for i, n in enumerate(names))
    for r in rows:
        runs = done[r.name].values()
        if {run.hash for run in runs} != {r.hash}:
            raise ValueError(f"{r.name}: the runs trained another pattern than {r.hash}")
    design = blocked_design(full)
    others = [n for n in ("log", "nearest") if n in names and winner in names]
    w = names.index(winner) if winner in names else -1
    p_values = [design.p_difference(w, names.index(o)) for o in others]
    comparisons = tuple(
        Comparison(o, _paired(full[w], full[names.index(o)]),
                   design.difference(w, names.index(o)),
                   design.difference(w, names.index(o), level).diff, adjusted)
        for o, level, adjusted in zip(others, holm_levels(p_values), holm(p_values)))
    small_means, full_means = small.mean(axis=1), full.mean(axis=1)
    low, high = bootstrap_spearman(small, full)
    every = [run for n in names for run in done[n].values()]
    return TransferSummary(
        rows, cfg.seeds, winner, Estimate(spearman(small_means, full_means), low, high),
        permutation_p(small_means, full_means),
        spearman(np.array([r.brief for r in rows]), full_means), design, comparisons,
        float(np.median([run.train_seconds / run.epochs for run in every])),
        sum(run.wall_seconds for run in every) / 3600, _elapsed_hours(cfg))


def _elapsed_hours(cfg: TransferConfig) -> float:
    """From the first 'start' to the last 'done' in run.log: the study's wall clock, stops
    between resumed stretches included."""
    import datetime as dt
    stamps = [dt.datetime.fromisoformat(line[:19]) for line in
              (cfg.out / "run.log").read_text(encoding="utf-8").splitlines()
              if " start " in line or " done " in line]
    return (max(stamps) - min(stamps)).total_seconds() / 3600 if stamps else math.nan


def source_numbers(cfg: TransferConfig) -> tuple[dict[str, tuple[str, float, tuple[float, ...]]],
                                                  str]:
    """Per pattern name of ``cfg``: its hash, brief accuracy and confirm-stage accuracies in
    the source study; and the name of the source's best confirmed search pattern."""
    from ..engine.spec import PatternSpec
    from ..search.config import load_config
    from ..search.experiment.study import study_evidence
    from ..search.storage.backends import load_study

    source = load_config(cfg.source)
    ev = study_evidence(load_study(source.name, source.storage_url))
    by_hash = {c.hash: c for c in ev.confirmed}
    out = {}
    for name, trial in cfg.patterns:
        digest = PatternSpec.load(cfg.spec_path(name)).hash
        if digest not in by_hash:
            raise UserError(f"{name}: trial {trial} of {source.name} trained pattern {digest}, "
                            f"which its confirm stage did not confirm")
        c = by_hash[digest]
        out[name] = (digest, c.brief, c.accuracies)
    best = next((c for c in ev.confirmed if c.label == "search"), None)
    winner = next((n for n, (h, _, _) in out.items() if best and h == best.hash), None)
    if winner is None:
        raise UserError(f"the best confirmed search pattern of {source.name} is not among the "
                        f"config's patterns: the comparisons need it")
    return out, winner


def transfer_figure(summary: TransferSummary) -> "go.Figure":
    """Each pattern's confirmed mean on the small network against its test mean at full
    scale, both with their 95% intervals: a ranking that transfers rises left to right."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for row in summary.rows:
        small, full = row.confirmed.mean, row.full.mean
        fig.add_trace(go.Scatter(
            x=[small.value], y=[full.value], mode="markers+text", text=[row.name],
            textposition="top center", name=row.name, showlegend=False,
            marker={"size": 10, "color": "#d62728" if row.name in ("log", "nearest")
                    else "#1f77b4"},
            error_x={"type": "data", "symmetric": False, "array": [small.high - small.value],
                     "arrayminus": [small.value - small.low]},
            error_y={"type": "data", "symmetric": False, "array": [full.high - full.value],
                     "arrayminus": [full.value - full.low]}))
    rho = summary.spearman
    fig.update_layout(
        title=f"Search-scale ranking vs full training: Spearman {rho.value:+.2f} "
              f"{rho.interval('+.2f')} (red: templates)",
        xaxis_title=f"confirmed mean, small network ({summary.rows[0].confirmed.n} seeds)",
        yaxis_title=f"test accuracy, scaled network trained fully ({len(summary.seeds)} seeds)")
    return fig


def tables(summary: TransferSummary) -> tuple[tuple[list[str], list[list[str]]],
                                              tuple[list[str], list[list[str]]]]:
    """The README's two tables: the patterns at both scales, and the winner's comparisons."""
    patterns = (["pattern", "hash", "brief accuracy", "confirmed mean (small)", "95% CI",
                 "full-scale test mean", "95% CI", "seeds", "params"],
                [[r.name, r.hash, f"{r.brief:.4f}", f"{r.confirmed.mean.value:.4f}",
                  r.confirmed.mean.interval(".4f"), f"{r.full.mean.value:.4f}",
                  r.full.mean.interval(".4f"), str(r.full.n), f"{r.params:,}"]
                 for r in summary.rows])
    versus = (["comparison", "difference", "paired 95% CI", "pooled 95% CI", "Holm CI",
               "Holm p"],
              [[f"{summary.winner} - {c.other}", f"{c.paired.diff.value:+.4f}",
                c.paired.diff.interval("+.4f"), c.pooled.diff.interval("+.4f"),
                c.holm.interval("+.4f"), f"{c.holm_p:.2f}"] for c in summary.comparisons])
    return patterns, versus
