"""The principle with its confound held equal: pairs of patterns with the same connection
budget, the same number of layers reading the block input and the same parameter count, that
differ in mean backprop distance; does the shorter one of a pair train to higher accuracy?"""
from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search_spaces import Pattern, distance_stats
from search_spaces.features import reads_of_input

from ..stats import Estimate, Regression, mean_ci, ols, spearman

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ..search.experiment.transfer import TransferConfig


@dataclass(frozen=True)
class Candidate:
    """A pattern with the quantities a pair holds equal and the one it varies."""
    hash: str
    connections: int
    reads: int             # nodes that read their block's input (node 0)
    params: int
    mean_distance: float

    @classmethod
    def of(cls, pattern: Pattern, params: int) -> "Candidate":
        return cls(pattern.hash, pattern.connections, reads_of_input(pattern), params,
                   distance_stats(pattern).mean)


@dataclass(frozen=True)
class Pair:
    """Two patterns equal in budget, reads of the block input and params (exactly);
    ``short`` has the smaller mean distance."""
    short: Candidate
    long: Candidate

    @property
    def margin(self) -> float:
        return self.long.mean_distance - self.short.mean_distance


def matched_pairs(candidates: Sequence[Candidate], min_margin: float) -> tuple[Pair, ...]:
    """Disjoint pairs, each of two candidates equal in connections, reads and params, differing
    in mean distance by at least ``min_margin``. Within each group of equal (connections,
    reads, params), ranked by mean distance, the i-th of the shorter half is paired with the
    i-th of the longer half (an odd group leaves its middle pattern out): every pair spans
    about half of its group's range, and no pattern is in two pairs."""
    groups: dict[tuple[int, int, int], list[Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.connections, c.reads, c.params), []).append(c)
    pairs = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda c: (c.mean_distance, c.hash))
        half = len(group) // 2
        for short, long in zip(group[:half], group[len(group) - half:]):
            pair = Pair(short, long)
            if pair.margin >= min_margin:
                pairs.append(pair)
    return tuple(pairs)


@dataclass(frozen=True)
class SignTest:
    positive: int          # pairs where the shorter pattern scored higher
    negative: int
    ties: int
    p_value: float         # two-sided exact binomial over the untied pairs


@dataclass(frozen=True)
class PairedResult:
    """The shorter minus the longer pattern of each pair, each pair's difference the mean
    over the seeds both trained (shared seeds: a seed's shared effect cancels)."""
    pairs: tuple[Pair, ...]
    differences: tuple[float, ...]          # per pair, in the pairs' order
    mean: Estimate                          # over pairs, 95% t-interval (pairs - 1 df)
    se: float
    sign: SignTest
    seeds: int

    def of(self, pair: Pair) -> float | None:
        """The difference of ``pair``; None when it is not one of these pairs."""
        return dict(zip(self.pairs, self.differences)).get(pair)


def paired_result(pairs: Sequence[Pair], accuracies: Mapping[str, Mapping[int, float]],
                  seeds: Sequence[int]) -> PairedResult:
    """:class:`PairedResult` of ``pairs`` from ``accuracies`` (per hash, per seed) over
    ``seeds``, which every pattern of a pair must hold."""
    from scipy.stats import binomtest

    diffs = []
    for p in pairs:
        a, b = accuracies[p.short.hash], accuracies[p.long.hash]
        diffs.append(float(np.mean([a[s] - b[s] for s in seeds])))
    m = mean_ci(diffs)
    positive = sum(d > 0 for d in diffs)
    negative = sum(d < 0 for d in diffs)
    untied = positive + negative
    p_value = float(binomtest(positive, untied, 0.5).pvalue) if untied else math.nan
    return PairedResult(tuple(pairs), tuple(diffs), m.mean, m.se,
                        SignTest(positive, negative, len(diffs) - untied, p_value), len(seeds))


def bench_candidates(directory: str | Path) -> tuple[list[Candidate],
                                                     dict[str, dict[int, float]]]:
    """The candidates of a built benchmark (its table's params) and their accuracies per
    seed."""
    from ..search.experiment.bench import load_bench

    bench = load_bench(directory)
    params: dict[str, int] = {}
    with (Path(directory) / "table.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            params[row["hash"]] = int(row["params"])
    seeds = bench.cfg.bench.seeds
    candidates = [Candidate.of(e.pattern, params[h]) for h, e in bench.entries.items()]
    accuracies = {h: dict(zip(seeds, e.accuracies)) for h, e in bench.entries.items()}
    return candidates, accuracies


@dataclass(frozen=True)
class ControlledConfig:
    """A controlled principle study's config (studies/principle_controlled/*.toml)."""
    bench: Path
    min_margin: float
    out: Path
    higher_pairs: int
    higher: "TransferConfig"        # its patterns: filled in by :meth:`with_patterns`

    @classmethod
    def load(cls, path: str | Path) -> "ControlledConfig":
        from ..errors import ConfigError
        from ..search.config import read_toml
        from ..search.experiment.transfer import TransferConfig
        raw = read_toml(path)
        try:
            h = raw["higher"]
            out = Path(raw["out"])
            higher = TransferConfig(source=h["source"], out=out / "higher",
                                    workers=int(h["workers"]),
                                    seeds=tuple(int(s) for s in h["seeds"]), patterns=(),
                                    train=dict(h["train"]))
            return cls(Path(raw["bench"]), float(raw["min_margin"]), out, int(h["pairs"]),
                       higher)
        except KeyError as e:
            raise ConfigError(f"{path}: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: {e}") from None

    @cached_property
    def candidates(self) -> tuple[list[Candidate], dict[str, dict[int, float]]]:
        """The benchmark's candidates and accuracies (:func:`bench_candidates`), read once."""
        return bench_candidates(self.bench)

    def design(self) -> tuple[tuple[Pair, ...], tuple[Pair, ...],
                              dict[str, dict[int, float]]]:
        """Every matched pair of the benchmark, the ``higher_pairs`` of largest margin (in
        that order, ties by hash), and the benchmark's accuracies per hash and seed."""
        candidates, accuracies = self.candidates
        pairs = matched_pairs(candidates, self.min_margin)
        widest = sorted(pairs, key=lambda p: (-p.margin, p.short.hash))[:self.higher_pairs]
        return pairs, tuple(widest), accuracies

    def with_patterns(self, trials: Mapping[str, int] | None = None) -> "TransferConfig":
        """The higher-fidelity runs: each pattern of the widest pairs, named by its hash, as
        the trial of the source study given in ``trials`` (None: runs to read, not to train;
        their trial is not needed)."""
        from dataclasses import replace

        from ..errors import UserError
        _, widest, _ = self.design()
        hashes = [h for p in widest for h in (p.short.hash, p.long.hash)]
        missing = [h for h in hashes if trials is not None and h not in trials]
        if missing:
            raise UserError(f"{self.higher.source}: no completed trial of pattern "
                            f"{', '.join(missing)}")
        return replace(self.higher, patterns=tuple(
            (h, -1 if trials is None else trials[h]) for h in hashes))


@dataclass(frozen=True)
class ControlledSummary:
    """What the controlled study publishes."""
    pairs: tuple[Pair, ...]
    bench: PairedResult                 # every pair, the benchmark's seeds and validation
    widest: tuple[Pair, ...]
    widest_bench: PairedResult          # the widest pairs at the benchmark's fidelity
    higher: PairedResult | None         # the widest pairs again: own seeds, test split
    regression: Regression              # pattern means on mean distance, reads, params
    confound: float                     # Spearman of mean distance and reads over the space
    patterns: int                       # in the benchmark


def summarise(cfg: ControlledConfig, higher: Mapping[str, Mapping[int, float]]
              ) -> ControlledSummary:
    """The summary from the benchmark and ``higher``: the higher-fidelity test accuracies per
    hash and seed (patterns missing a seed are left out with their pair; None when no pair is
    complete)."""
    pairs, widest, accuracies = cfg.design()
    candidates, _ = cfg.candidates
    seeds = sorted(next(iter(accuracies.values())))
    seeds_higher = list(cfg.higher.seeds)
    done = tuple(p for p in widest if all(
        set(seeds_higher) <= set(higher.get(h, {})) for h in (p.short.hash, p.long.hash)))
    means = np.array([np.mean(list(accuracies[c.hash].values())) for c in candidates])
    x = np.array([[c.mean_distance, c.reads, c.params] for c in candidates], dtype=float)
    return ControlledSummary(
        pairs, paired_result(pairs, accuracies, seeds), widest,
        paired_result(widest, accuracies, seeds),
        paired_result(done, higher, seeds_higher) if done else None,
        ols(x, means, ["mean_distance", "reads_of_input", "params"]),
        spearman(x[:, 0], x[:, 1]), len(candidates))


def pair_table(summary: ControlledSummary) -> tuple[list[str], list[list[str]]]:
    """One row per pair: what it holds equal, both mean distances and the shorter minus the
    longer at each fidelity (positive: the principle's prediction)."""
    rows = []
    for p, d in zip(summary.pairs, summary.bench.differences):
        h = None if summary.higher is None else summary.higher.of(p)
        rows.append([p.short.hash, p.long.hash, str(p.short.reads), f"{p.short.params:,}",
                     f"{p.short.mean_distance:.3f}", f"{p.long.mean_distance:.3f}",
                     f"{d:+.4f}", "-" if h is None else f"{h:+.4f}"])
    return (["shorter", "longer", "reads of input", "params", "mean distance (shorter)",
             "mean distance (longer)", "shorter - longer (bench)",
             "shorter - longer (higher, test)"], rows)


def higher_accuracies(cfg: ControlledConfig) -> dict[str, dict[int, float]]:
    """The higher-fidelity runs' test accuracies per hash and seed, those finished."""
    from .transfer import read_runs

    transfer = cfg.with_patterns()
    return {name: {seed: run.test_accuracy for seed, run in runs.items()}
            for name, runs in read_runs(transfer).items()}


def pairs_figure(summary: ControlledSummary) -> "go.Figure":
    """Each pair's shorter-minus-longer accuracy against its margin in mean distance, at the
    benchmark's fidelity (all pairs) and at the higher one (the widest): the principle
    predicts points above zero, more so to the right."""
    import plotly.graph_objects as go

    fig = go.Figure()
    higher = summary.higher
    for name, result, color in (
            (f"benchmark fidelity, {summary.bench.seeds} seeds", summary.bench, "#1f77b4"),
            (f"higher fidelity, {higher.seeds if higher else 0} seeds of its own, test split",
             higher, "#d62728")):
        if result is not None:
            fig.add_trace(go.Scatter(x=[p.margin for p in result.pairs],
                                     y=list(result.differences), mode="markers", name=name,
                                     marker={"size": 9, "color": color}))
    fig.add_hline(y=0, line_dash="dot")
    b = summary.bench.mean
    fig.update_layout(
        title=f"Pairs equal in budget, reads of the block input and params: shorter minus "
              f"longer {b.value:+.4f} {b.interval('+.4f')}",
        xaxis_title="margin in mean distance (longer minus shorter)",
        yaxis_title="accuracy, shorter minus longer")
    return fig


def result_lines(summary: ControlledSummary) -> list[str]:
    """The numbers the README quotes, a line each."""
    def paired(r: PairedResult) -> str:
        s = r.sign
        return (f"{r.mean.value:+.4f} {r.mean.interval('+.4f')} over {len(r.pairs)} pairs x "
                f"{r.seeds} seeds; shorter ahead in {s.positive}, behind in {s.negative} "
                f"(sign test p = {s.p_value:.2f})")
    lines = [f"confound: Spearman of mean distance and reads of the block input over the "
             f"{summary.patterns} patterns {summary.confound:+.2f}",
             f"all pairs, benchmark fidelity: {paired(summary.bench)}",
             f"widest pairs, benchmark fidelity: {paired(summary.widest_bench)}"]
    if summary.higher is not None:
        lines.append(f"widest pairs, higher fidelity, seeds of their own, test split: "
                     f"{paired(summary.higher)}")
    for c in summary.regression.coefficients[1:]:
        spec = "+.2e" if c.name == "params" else "+.4f"  # per parameter: a tiny number
        lines.append(f"regression of pattern means, {c.name}: {c.estimate.value:{spec}} "
                     f"{c.estimate.interval(spec)} (p = {c.p_value:.3f})")
    if summary.regression.dropped:
        lines.append(f"dropped (an exact linear function of the others): "
                     f"{', '.join(summary.regression.dropped)}")
    return lines
