"""How well each fidelity ranks patterns: the fidelity study's report (text, JSON, HTML, PNG).

Per level: the cost of a trial, the spread of one trial over seeds, how well two seeds agree
(seed-to-seed Spearman, and the reliability of the level's mean over its seeds by the
Spearman-Brown formula), and the Spearman and Kendall of its ranking (pattern means) against the
reference level's (the last), each with a bootstrap 95% interval over patterns and seeds. The
recommendation: the cheapest level whose Spearman with the reference reaches the target.
"""
from __future__ import annotations

import html
import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from search_spaces import distance_stats

from ..errors import UserError
from ..search.fidelity import FidelityTable
from ..stats import kendall, pooled_std, spearman, spearman_brown
from ..tables import format_table, html_table, markdown_table

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Interval:
    """A statistic with its bootstrap 95% interval."""
    value: float
    low: float
    high: float

    def text(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]" \
            if math.isfinite(self.value) else "-"


@dataclass(frozen=True)
class LevelResult:
    """One fidelity's numbers over the patterns every level finished."""
    name: str
    fidelity: str                  # in words
    seeds: int
    seconds: float                 # median wall time of one trial
    mean_accuracy: float
    seed_std: float                # pooled within-pattern std of one trial's accuracy
    spread: float                  # std of the pattern means
    seed_spearman: float           # mean Spearman between two seeds' rankings
    reliability: float             # of the mean over ``seeds`` (Spearman-Brown)
    vs_reference: Interval         # Spearman of the pattern means with the reference's
    kendall_vs_reference: Interval


@dataclass(frozen=True)
class PatternResult:
    label: str
    hash: str
    mean_distance: float
    accuracies: dict[str, list[float]]   # by level: one per seed, in seed order


@dataclass(frozen=True)
class FidelityReport:
    levels: tuple[LevelResult, ...]      # cheapest first as configured; the last: reference
    patterns: tuple[PatternResult, ...]
    target: float
    recommended: str | None              # the cheapest level reaching the target (None: none)
    verdict: str
    left_out: int                        # patterns without every seed at every level
    pending: int                         # trials still queued or running
    resamples: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FidelityReport":
        levels = tuple(LevelResult(**{**lv, "vs_reference": Interval(**lv["vs_reference"]),
                                      "kendall_vs_reference":
                                          Interval(**lv["kendall_vs_reference"])})
                       for lv in data["levels"])
        return cls(**{**data, "levels": levels,
                      "patterns": tuple(PatternResult(**p) for p in data["patterns"])})

    def table(self) -> tuple[list[str], list[list[Any]]]:
        headers = ["level", "fidelity", "seeds", "s/trial", "x cost", "accuracy", "seed std",
                   "means std", "seed-seed rho", "mean reliability", "rho vs reference",
                   "tau vs reference"]
        top = self.levels[-1].seconds
        rows = [[lv.name, lv.fidelity, lv.seeds, f"{lv.seconds:.1f}", f"{lv.seconds / top:.2f}",
                 f"{lv.mean_accuracy:.4f}", f"{lv.seed_std:.4f}", f"{lv.spread:.4f}",
                 f"{lv.seed_spearman:+.2f}", f"{lv.reliability:+.2f}",
                 lv.vs_reference.text() if i < len(self.levels) - 1 else "(reference)",
                 lv.kendall_vs_reference.text() if i < len(self.levels) - 1 else "(reference)"]
                for i, lv in enumerate(self.levels)]
        return headers, rows

    def text(self) -> str:
        n = len(self.patterns)
        head = (f"{n} patterns at {len(self.levels)} fidelities (reference: "
                f"{self.levels[-1].name}); 95% bootstrap intervals over patterns and seeds "
                f"({self.resamples} resamples)")
        notes = []
        if self.left_out:
            notes.append(f"{self.left_out} patterns left out: not every seed at every level "
                         f"finished")
        if self.pending:
            notes.append(f"{self.pending} trials still queued or running: run the command again")
        return "\n".join([head, format_table(*self.table()), "", self.verdict, *notes])


def _bootstrap(means: dict[str, np.ndarray], reference: str, acc: dict[str, np.ndarray],
               resamples: int, seed: int = 0) -> dict[str, tuple[Interval, Interval]]:
    """Spearman and Kendall of each level's pattern means with the reference's, with percentile
    95% intervals from resampling the patterns and, within each, its seeds."""
    rng = np.random.default_rng(seed)
    n = len(means[reference])
    boots: dict[str, list[tuple[float, float]]] = {name: [] for name in means}
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        resampled = {}
        for name, a in acc.items():
            s = a.shape[1]
            pick = rng.integers(0, s, (n, s))
            resampled[name] = a[idx[:, None], pick].mean(axis=1)
        for name in means:
            if name != reference:
                boots[name].append((spearman(resampled[name], resampled[reference]),
                                    kendall(resampled[name], resampled[reference])))
    out = {}
    for name in means:
        if name == reference:
            continue
        b = np.array(boots[name])
        rho = Interval(spearman(means[name], means[reference]),
                       *np.nanpercentile(b[:, 0], [2.5, 97.5]).tolist())
        tau = Interval(kendall(means[name], means[reference]),
                       *np.nanpercentile(b[:, 1], [2.5, 97.5]).tolist())
        out[name] = (rho, tau)
    return out


def _seed_spearman(a: np.ndarray) -> float:
    """Mean Spearman over every pair of seeds (columns)."""
    pairs = list(itertools.combinations(range(a.shape[1]), 2))
    return float(np.mean([spearman(a[:, i], a[:, j]) for i, j in pairs]))


def recommend(levels: list[LevelResult], target: float) -> tuple[str | None, str]:
    """The cheapest level below the reference whose Spearman with it reaches ``target``, and
    the verdict in words (the best a level reaches when none does)."""
    reference, below = levels[-1], levels[:-1]
    ok = [lv for lv in below if lv.vs_reference.value >= target]
    cap = (f"The reference's own mean over {reference.seeds} seeds has reliability "
           f"{reference.reliability:.2f}, which caps any agreement with it.")
    if ok:
        best = min(ok, key=lambda lv: lv.seconds)
        return best.name, (f"Recommended: {best.name} ({best.fidelity}): its ranking matches "
                           f"{reference.name}'s at Spearman {best.vs_reference.text()} >= "
                           f"{target:g}, at {best.seconds / reference.seconds:.2f}x the "
                           f"reference's cost per trial. {cap}")
    top = max(below, key=lambda lv: lv.vs_reference.value)
    return None, (f"No level ranks like {reference.name} at Spearman >= {target:g}: the best, "
                  f"{top.name} ({top.fidelity}), reaches {top.vs_reference.text()}. {cap}")


def fidelity_report(table: FidelityTable, target: float = 0.8,
                    resamples: int = 2000) -> FidelityReport:
    """The report of a fidelity study's table (patterns with every seed at every level)."""
    names = [name for name, _ in table.levels]
    by_level = {name: table.accuracies(name) for name in names}
    wanted = {name: len({r.seed for r in table.runs if r.level == name}) for name in names}
    complete = [c for c in table.patterns
                if all(len(by_level[n].get(c.pattern.hash, {})) == wanted[n] > 0
                       for n in names)]
    if len(complete) < 3:
        raise UserError(f"the fidelity study has {len(complete)} patterns with every seed at "
                         f"every level; the report needs 3 (run it to the end first)")
    acc = {n: np.array([[seeds[s] for s in sorted(seeds)]
                        for seeds in (by_level[n][c.pattern.hash] for c in complete)])
           for n in names}
    means = {n: a.mean(axis=1) for n, a in acc.items()}
    corr = _bootstrap(means, names[-1], acc, resamples)
    nan = Interval(math.nan, math.nan, math.nan)
    levels = []
    for name, fidelity in table.levels:
        a = acc[name]
        seconds = [r.seconds for r in table.runs if r.level == name]
        r = _seed_spearman(a)
        levels.append(LevelResult(
            name, fidelity.describe(), a.shape[1], float(np.nanmedian(seconds)),
            float(a.mean()), pooled_std(list(a))[0], float(means[name].std(ddof=1)), r,
            spearman_brown(r, a.shape[1]), *corr.get(name, (nan, nan))))
    recommended, verdict = recommend(levels, target)
    patterns = tuple(PatternResult(c.label, c.pattern.hash, distance_stats(c.pattern).mean,
                                   {n: acc[n][i].tolist() for n in names})
                     for i, c in enumerate(complete))
    return FidelityReport(tuple(levels), patterns, target, recommended, verdict,
                          len(table.patterns) - len(complete), table.pending, resamples)


def fidelity_figure(report: FidelityReport) -> go.Figure:
    """Each pattern's mean accuracy at every lower level against the reference's, with error
    bars of one seed std."""
    below, ref = report.levels[:-1], report.levels[-1]
    fig = make_subplots(rows=1, cols=len(below), subplot_titles=[
        f"{lv.name}: rho {lv.vs_reference.value:+.2f}" for lv in below])
    x = np.array([np.mean(p.accuracies[ref.name]) for p in report.patterns])
    xerr = np.array([np.std(p.accuracies[ref.name], ddof=1) for p in report.patterns])
    labels = [p.label for p in report.patterns]
    for col, lv in enumerate(below, start=1):
        y = np.array([np.mean(p.accuracies[lv.name]) for p in report.patterns])
        yerr = np.array([np.std(p.accuracies[lv.name], ddof=1) for p in report.patterns])
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", text=labels, showlegend=False,
                                 error_x={"type": "data", "array": xerr},
                                 error_y={"type": "data", "array": yerr},
                                 marker={"color": ["#d62728" if lab in ("log", "nearest",
                                                                        "evenly_spaced")
                                                   else "#1f77b4" for lab in labels]},
                                 hovertemplate="%{text}<br>reference %{x:.4f}<br>"
                                               f"{lv.name} " + "%{y:.4f}<extra></extra>"),
                      row=1, col=col)
        fig.update_xaxes(title_text=f"{ref.name} accuracy (mean of {ref.seeds})", row=1, col=col)
        fig.update_yaxes(title_text=f"{lv.name} accuracy (mean of {lv.seeds})", row=1, col=col)
    fig.update_layout(title="Pattern accuracy at each fidelity against the reference "
                            "(red: templates; bars: one seed's std)")
    return fig


def write_fidelity(report: FidelityReport, out: str | Path) -> list[Path]:
    """fidelity.json, fidelity.md, fidelity.html and (where Chromium is installed)
    fidelity.png in ``out``."""
    from .report import write_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "fidelity.json", out / "fidelity.md", out / "fidelity.html"]
    paths[0].write_text(json.dumps(report.to_json(), indent=1) + "\n")
    paths[1].write_text(markdown_table(*report.table()) + "\n\n" + report.verdict + "\n")
    fig = fidelity_figure(report)
    paths[2].write_text(
        "<html><head><meta charset='utf-8'><title>fidelity</title></head><body>"
        f"<h1>How well each fidelity ranks {len(report.patterns)} patterns</h1>" +
        html_table(*report.table()) + f"<p>{html.escape(report.verdict)}</p>" +
        fig.to_html(full_html=False, include_plotlyjs=True) + "</body></html>")
    try:
        paths.append(write_png(fig, out / "fidelity.png", width=360 * (len(report.levels) - 1),
                               height=420))
    except UserError as e:  # the HTML holds the same figure
        _log.warning("no fidelity.png: %s", e)
    return paths
