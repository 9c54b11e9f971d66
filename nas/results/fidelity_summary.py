"""How well each fidelity ranks patterns: the fidelity study's report (text, JSON, HTML, PNG).

Per level: the cost of a trial, the spread of one trial over seeds, how well two seeds agree
(seed-to-seed Spearman, and the reliability of the level's mean over its seeds by the
Spearman-Brown formula), and the Spearman and Kendall of its ranking (pattern means) against the
reference level's (the last), each with a bootstrap 95% interval over patterns. The
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

from search_spaces import TEMPLATES, distance_stats

from ..errors import UserError
from ..search.experiment.fidelity import FidelityTable
from ..stats import Estimate, kendall, pooled_std, spearman, spearman_brown
from ..text_tables import format_table, html_table, markdown_table

_log = logging.getLogger(__name__)


def _num(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "-"


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
    vs_reference: Estimate         # Spearman of the pattern means with the reference's
    kendall_vs_reference: Estimate  # (both with bootstrap 95% intervals)


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
        levels = tuple(LevelResult(**{**lv, "vs_reference": Estimate(**lv["vs_reference"]),
                                      "kendall_vs_reference":
                                          Estimate(**lv["kendall_vs_reference"])})
                       for lv in data["levels"])
        return cls(**{**data, "levels": levels,
                      "patterns": tuple(PatternResult(**p) for p in data["patterns"])})

    def table(self) -> tuple[list[str], list[list[Any]]]:
        headers = ["level", "fidelity", "seeds", "s/trial", "x cost", "accuracy", "seed std",
                   "means std", "seed-seed rho", "mean reliability", "rho vs reference",
                   "tau vs reference"]
        top = self.levels[-1].seconds
        rows = [[lv.name, lv.fidelity, lv.seeds, _num(lv.seconds, ".1f"),
                 _num(lv.seconds / top, ".2f"), f"{lv.mean_accuracy:.4f}",
                 _num(lv.seed_std, ".4f"), f"{lv.spread:.4f}", _num(lv.seed_spearman, "+.2f"),
                 _num(lv.reliability, "+.2f"),
                 lv.vs_reference.text("+.2f") if i < len(self.levels) - 1 else "(reference)",
                 lv.kendall_vs_reference.text("+.2f") if i < len(self.levels) - 1
                 else "(reference)"]
                for i, lv in enumerate(self.levels)]
        return headers, rows

    def text(self) -> str:
        n = len(self.patterns)
        head = (f"{n} patterns at {len(self.levels)} fidelities (reference: "
                f"{self.levels[-1].name}); 95% bootstrap intervals over patterns "
                f"({self.resamples} resamples)")
        notes = []
        if self.left_out:
            notes.append(f"{self.left_out} patterns left out: not every level has finished "
                         f"them")
        if self.pending:
            notes.append(f"{self.pending} trials still queued or running: run the command again")
        return "\n".join([head, format_table(*self.table()), "", self.verdict, *notes])


def _bootstrap(means: dict[str, np.ndarray], reference: str, resamples: int,
               seed: int = 0) -> dict[str, tuple[Estimate, Estimate]]:
    """Spearman and Kendall of each level's pattern means with the reference's, with
    percentile 95% intervals from resampling the patterns (their means carry the seed noise;
    a seed gives the same initial weights at every level, so seeds are not redrawn apart)."""
    rng = np.random.default_rng(seed)
    n = len(means[reference])
    idx = rng.integers(0, n, (resamples, n))
    out = {}
    for name, m in means.items():
        if name == reference:
            continue
        ref = means[reference]
        boots = np.array([(spearman(m[i], ref[i]), kendall(m[i], ref[i])) for i in idx])
        rho = Estimate(spearman(m, ref), *np.nanpercentile(boots[:, 0], [2.5, 97.5]).tolist())
        tau = Estimate(kendall(m, ref), *np.nanpercentile(boots[:, 1], [2.5, 97.5]).tolist())
        out[name] = (rho, tau)
    return out


def _seed_spearman(a: np.ndarray) -> float:
    """Mean Spearman over every pair of seeds (columns); NaN with one seed."""
    pairs = list(itertools.combinations(range(a.shape[1]), 2))
    return float(np.mean([spearman(a[:, i], a[:, j]) for i, j in pairs])) if pairs else math.nan


def _seeds_used(runs: dict[str, dict[int, float]]) -> list[int]:
    """The seeds a level's report uses: the first k in seed order, k as large as possible
    without losing a pattern that has the first (a study cut short, seed-major, has finished
    seed 0 everywhere before seed 1 anywhere)."""
    order = sorted({s for seeds in runs.values() for s in seeds})

    def having(k: int) -> int:
        return sum(1 for seeds in runs.values() if set(order[:k]) <= set(seeds))

    return order[:max((k for k in range(1, len(order) + 1) if having(k) == having(1)),
                      default=0)]


def recommend(levels: list[LevelResult], target: float) -> tuple[str | None, str]:
    """The cheapest level below the reference whose Spearman with it reaches ``target``, and
    the verdict in words (the best a level reaches when none does)."""
    reference = levels[-1]
    below = [lv for lv in levels[:-1] if math.isfinite(lv.vs_reference.value)]
    ceiling = math.sqrt(reference.reliability) if reference.reliability > 0 else math.nan
    cap = "" if not math.isfinite(ceiling) else (
        f" The reference's own mean over {reference.seeds} seeds has reliability "
        f"{reference.reliability:.2f}, so no level can rank like it much above Spearman "
        f"sqrt({reference.reliability:.2f}) = {ceiling:.2f}" +
        (f"; the target {target:g} is above that: the reference needs more seeds to judge "
         f"by." if ceiling < target else "."))
    ok = [lv for lv in below if lv.vs_reference.value >= target and math.isfinite(lv.seconds)]
    if ok:
        best = min(ok, key=lambda lv: lv.seconds)
        unsure = " (its interval reaches below the target)" if \
            best.vs_reference.low < target else ""
        return best.name, (f"Recommended: {best.name} ({best.fidelity}): its ranking matches "
                           f"{reference.name}'s at Spearman {best.vs_reference.text('+.2f')} >= "
                           f"{target:g}{unsure}, at {best.seconds / reference.seconds:.2f}x the "
                           f"reference's cost per trial.{cap}")
    if not below:
        return None, f"No level could be compared with {reference.name}.{cap}"
    top = max(below, key=lambda lv: lv.vs_reference.value)
    return None, (f"No level ranks like {reference.name} at Spearman >= {target:g}: the best, "
                  f"{top.name} ({top.fidelity}), reaches {top.vs_reference.text('+.2f')}.{cap}")


def study_time(report: "FidelityReport", trials: int, workers: int) -> str:
    """The level to search at (the recommended one, else the reference) and a study's wall
    time at it, in words."""
    name = report.recommended or report.levels[-1].name
    level = next(lv for lv in report.levels if lv.name == name)
    hours = trials * level.seconds / workers / 3600
    head = "use" if report.recommended else "no cheaper level ranks like the reference; use it:"
    return (f"{head} {level.name} ({level.fidelity}): {level.seconds:.1f} s per trial here, so "
            f"{trials} trials on {workers} workers take about {hours:.2f} h")


def fidelity_report(table: FidelityTable, target: float = 0.8,
                    resamples: int = 2000) -> FidelityReport:
    """The report of a fidelity study's table: the patterns every level has trained with the
    seeds it reports (:func:`_seeds_used`)."""
    names = [name for name, _ in table.levels]
    by_level = {name: table.accuracies(name) for name in names}
    seeds = {name: _seeds_used(by_level[name]) for name in names}
    complete = [c for c in table.patterns
                if all(seeds[n] and set(seeds[n]) <= set(by_level[n].get(c.pattern.hash, {}))
                       for n in names)]
    if len(complete) < 3:
        raise UserError(f"the fidelity study has {len(complete)} patterns with every seed at "
                         f"every level; the report needs 3 (run it to the end first)")
    acc = {n: np.array([[by_level[n][c.pattern.hash][s] for s in seeds[n]] for c in complete])
           for n in names}
    means = {n: a.mean(axis=1) for n, a in acc.items()}
    corr = _bootstrap(means, names[-1], resamples)
    nan = Estimate.unknown()
    levels = []
    for name, fidelity in table.levels:
        a = acc[name]
        seconds = [r.seconds for r in table.runs if r.level == name]
        r = _seed_spearman(a)
        finite = [s for s in seconds if math.isfinite(s)]
        levels.append(LevelResult(
            name, fidelity.describe(), a.shape[1],
            float(np.median(finite)) if finite else math.nan, float(a.mean()),
            pooled_std(list(a))[0], float(means[name].std(ddof=1)), r,
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
    def spread(level: LevelResult) -> dict[str, Any]:
        """Error bars of one seed's std (none while a level has one seed)."""
        if level.seeds < 2:
            return {"visible": False}
        return {"type": "data", "array": [float(np.std(p.accuracies[level.name], ddof=1))
                                          for p in report.patterns]}

    x = np.array([np.mean(p.accuracies[ref.name]) for p in report.patterns])
    labels = [p.label for p in report.patterns]
    for col, lv in enumerate(below, start=1):
        y = np.array([np.mean(p.accuracies[lv.name]) for p in report.patterns])
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", text=labels, showlegend=False,
                                 error_x=spread(ref), error_y=spread(lv),
                                 marker={"color": ["#d62728" if lab in TEMPLATES
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
