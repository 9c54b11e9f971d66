"""Search strategies replayed on a tabular benchmark, and how well each zero-cost score ranks
it: the summary (JSON), its tables, the regret figure and the HTML page."""
from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from search_spaces import distance_stats
from search_spaces.features import SCORES

from ..search.experiment.bench import Bench, Replay, replay
from ..stats import RankCorrelation, correlate, interval_headers
from ..text_tables import html_table, markdown_table
from .analysis import SCORE_SIGN, Table


def _median_hit(hits: list[int | None]) -> float | None:
    """Median trials to a hit; a repeat that never hit counts as infinitely many (None: the
    median did not hit)."""
    median = float(np.median([h if h is not None else math.inf for h in hits]))
    return None if math.isinf(median) else median


@dataclass(frozen=True)
class StrategySummary:
    """One strategy's replays: trials to the top 5% / 1% (median, share of repeats that got
    there, each repeat's) and the mean regret after each trial with its 95% band."""
    strategy: str
    repeats: int
    top5_median: float | None      # None: the median repeat never got there
    top5_reached: float
    top1_median: float | None
    top1_reached: float
    top5_trials: tuple[int | None, ...]
    top1_trials: tuple[int | None, ...]
    distinct_mean: float
    regret_mean: tuple[float, ...]
    regret_low: tuple[float, ...]
    regret_high: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StrategySummary":
        plain: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in data.items()}
        return cls(**plain)


@dataclass(frozen=True)
class ZeroCostRow:
    """One zero-cost score's rank correlation (``method``) with the patterns' mean accuracy."""
    score: str
    method: str                    # spearman | kendall
    rank: RankCorrelation
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "method": self.method, **self.rank.to_json(), "n": self.n}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ZeroCostRow":
        return cls(data["score"], data["method"], RankCorrelation.from_json(data), data["n"])


@dataclass(frozen=True)
class ReplaySummary:
    """Every strategy replayed on a benchmark, and its zero-cost scores ranked: what
    ``replay.json`` holds (:meth:`to_json`, read back by :meth:`from_json`)."""
    bench: str
    patterns: int
    seeds: tuple[int, ...]
    trials: int
    repeats: int
    best_accuracy: float
    top5_count: int
    top1_count: int
    accuracy_range: tuple[float, float]
    seed_spread: float | None      # mean std over seeds (None: one seed)
    strategies: tuple[StrategySummary, ...]
    zero_cost: tuple[ZeroCostRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {"bench": self.bench, "patterns": self.patterns, "seeds": list(self.seeds),
                "trials": self.trials, "repeats": self.repeats,
                "best_accuracy": self.best_accuracy, "top5_count": self.top5_count,
                "top1_count": self.top1_count, "accuracy_range": list(self.accuracy_range),
                "seed_spread": self.seed_spread,
                "strategies": [s.to_json() for s in self.strategies],
                "zero_cost": [z.to_json() for z in self.zero_cost]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ReplaySummary":
        low, high = data["accuracy_range"]
        return cls(**{**data, "seeds": tuple(data["seeds"]), "accuracy_range": (low, high),
                      "strategies": tuple(StrategySummary.from_json(s)
                                          for s in data["strategies"]),
                      "zero_cost": tuple(ZeroCostRow.from_json(z) for z in data["zero_cost"])})


def summarize(name: str, runs: list[Replay], best: float, trials: int) -> StrategySummary:
    """Trials to the top 5% / 1% (median, share of repeats that got there) and the mean regret
    curve with its 95% band (normal approximation over repeats)."""
    regret = best - np.array([r.curve for r in runs])
    half = 1.96 * regret.std(axis=0, ddof=1) / math.sqrt(len(runs)) if len(runs) > 1 else \
        np.zeros(trials)
    mean = regret.mean(axis=0)
    return StrategySummary(
        name, len(runs), _median_hit([r.top5 for r in runs]),
        sum(r.top5 is not None for r in runs) / len(runs), _median_hit([r.top1 for r in runs]),
        sum(r.top1 is not None for r in runs) / len(runs), tuple(r.top5 for r in runs),
        tuple(r.top1 for r in runs), float(np.mean([r.distinct for r in runs])),
        tuple(mean.tolist()), tuple((mean - half).tolist()), tuple((mean + half).tolist()))


def zero_cost_ranking(bench: Bench, resamples: int = 2000) -> list[ZeroCostRow]:
    """Spearman and Kendall of each zero-cost score against the patterns' mean accuracy, with
    95% CIs and p-values as nas.stats.correlate gives them (resampled up to its
    RESAMPLE_LIMIT patterns)."""
    entries = list(bench.entries.values())
    accuracy = np.array([e.accuracy for e in entries])
    rows = []
    for score_name, score in SCORES.items():
        values = np.array([score(e.pattern) for e in entries])
        for method in ("spearman", "kendall"):
            rows.append(ZeroCostRow(score_name, method,
                                    correlate(values, accuracy, method, resamples=resamples),
                                    len(entries)))
    return rows


def replay_bench(bench: Bench, strategies: tuple[str, ...], repeats: int = 30,
                 trials: int = 40, progress: bool = True,
                 resamples: int = 2000) -> ReplaySummary:
    """Replay every strategy ``repeats`` times for ``trials`` distinct patterns; the summary.
    One progress bar over repeats x strategies (its ETA) and then the zero-cost rankings."""
    from tqdm.auto import tqdm

    best = bench.ranked()[0].accuracy
    runs: list[list[Replay]] = [[] for _ in strategies]
    # Repeat-major: each stretch of the bar runs every strategy once, so its ETA holds even
    # when one strategy is much slower than another (a replay depends on its repeat only).
    with tqdm(total=len(strategies) * repeats, disable=not progress, unit="run",
              desc="replay", dynamic_ncols=True) as bar:
        for r in range(repeats):
            for i, name in enumerate(strategies):
                bar.set_postfix(strategy=name, repeat=r)
                runs[i].append(replay(bench, name, trials, r))
                bar.update()
        bar.set_postfix_str("zero-cost score rankings")
        zero_cost = zero_cost_ranking(bench, resamples)
    results = tuple(summarize(name, done, best, trials) for name, done in zip(strategies, runs))
    accuracies = [e.accuracy for e in bench.ranked()]
    return ReplaySummary(
        bench.cfg.name, len(bench.entries), tuple(bench.cfg.bench.seeds), trials, repeats, best,
        len(bench.top(0.05)), len(bench.top(0.01)), (accuracies[-1], accuracies[0]),
        float(np.mean([e.std for e in bench.entries.values()]))
        if len(bench.cfg.bench.seeds) > 1 else None,
        results, tuple(zero_cost))


def _trials(value: float | None, trials: int) -> str:
    return f"> {trials}" if value is None else f"{value:g}"


REGRET_AT = (5, 10, 20)  # the trials after which the table states the mean regret


def _regret_at(s: StrategySummary, trial: int) -> str:
    """Mean regret after ``trial`` trials with its 95% band over repeats ("-": not reached)."""
    if len(s.regret_mean) < trial:
        return "-"
    k = trial - 1
    return f"{s.regret_mean[k]:.4f} [{s.regret_low[k]:.4f}, {s.regret_high[k]:.4f}]"


def strategy_table(result: ReplaySummary) -> Table:
    rows = [[s.strategy, _trials(s.top5_median, result.trials), f"{s.top5_reached:.0%}",
             _trials(s.top1_median, result.trials), f"{s.top1_reached:.0%}",
             *(_regret_at(s, n) for n in REGRET_AT), f"{s.regret_mean[-1]:.4f}",
             f"{s.distinct_mean:.1f}"]
            for s in result.strategies]
    return (["strategy", "trials to top 5% (median)", "reached top 5%",
             "trials to top 1% (median)", "reached top 1%",
             *(f"regret after {n} (95% CI)" for n in REGRET_AT),
             f"regret after {result.trials}", "patterns trained (mean)"], rows)


def zero_cost_table(rows: Sequence[ZeroCostRow]) -> Table:
    cells = [[z.score, z.method, f"{z.rank.r.value:.3f}", z.rank.r.interval(".3f"),
              f"{z.rank.p_value:.4f}", str(z.n)] for z in rows]
    n = rows[0].n if rows else 0
    return [f"score ({SCORE_SIGN})", "method", "r", *interval_headers(n), "n"], cells


def regret_figure(result: ReplaySummary) -> go.Figure:
    fig = go.Figure()
    colors = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#8c564b"]
    for s, color in zip(result.strategies, colors * 4):
        x = list(range(1, len(s.regret_mean) + 1))
        fig.add_trace(go.Scatter(x=x + x[::-1], y=[*s.regret_high, *s.regret_low[::-1]],
                                 fill="toself", fillcolor=color, opacity=0.15,
                                 line={"width": 0}, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=list(s.regret_mean), name=s.strategy,
                                 line={"color": color}))
    fig.update_layout(title=f"Mean regret on {result.bench} ({result.patterns} patterns, "
                            f"{result.repeats} repeats, 95% band)",
                      xaxis_title="trials",
                      yaxis_title="regret: best accuracy in the table - best found")
    return fig


def table_figure(bench: Bench) -> go.Figure:
    """Each pattern's mean accuracy (over seeds) against its mean backprop distance."""
    entries = list(bench.entries.values())
    mean = np.array([distance_stats(e.pattern).mean for e in entries])
    fig = go.Figure(go.Scatter(
        x=mean, y=[e.accuracy for e in entries], mode="markers",
        error_y={"type": "data", "array": [e.std for e in entries],
                 "thickness": 0.6},
        text=[e.pattern.hash for e in entries], hovertemplate="%{text}<br>%{x:.3f}, %{y:.4f}"))
    return fig.update_layout(
        title=f"{bench.cfg.name}: {len(entries)} patterns, accuracy (mean and std over "
              f"{len(bench.cfg.bench.seeds)} seeds) against mean backprop distance",
        xaxis_title="mean backprop distance", yaxis_title="validation accuracy")


def write_replay(result: ReplaySummary, out: str | Path,
                 bench: Bench | None = None) -> list[Path]:
    """replay.json, replay.md (the tables) and replay.html (tables, the regret figure, and
    with ``bench`` its accuracy-distance figure) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(result.to_json(), indent=1))
    low, high = result.accuracy_range
    head = (f"{result.patterns} patterns x {len(result.seeds)} seeds; accuracy "
            f"{low:.4f}..{high:.4f}; top 5% = {result.top5_count} patterns, top 1% = "
            f"{result.top1_count}; {result.repeats} repeats of {result.trials} patterns each")
    (out / "replay.md").write_text(
        f"{head}\n\n{markdown_table(*strategy_table(result))}\n\n"
        f"{markdown_table(*zero_cost_table(result.zero_cost))}\n")
    figure = regret_figure(result).to_html(full_html=False, include_plotlyjs=True,
                                           config={"displaylogo": False})
    if bench is not None:
        figure += table_figure(bench).to_html(full_html=False, include_plotlyjs=False,
                                              config={"displaylogo": False})
    (out / "replay.html").write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>skipnas replay: {html.escape(result.bench)}
</title><style>body{{font-family:sans-serif;margin:24px;}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head><body>
<h1>Search strategies on {html.escape(result.bench)}</h1><p>{html.escape(head)}</p>
<h2>Trials to the top of the table</h2>{html_table(*strategy_table(result))}
<h2>Zero-cost scores against accuracy</h2>{html_table(*zero_cost_table(result.zero_cost))}
<h2>Regret and the table</h2>{figure}</body></html>
""")
    return [out / "replay.json", out / "replay.md", out / "replay.html"]
