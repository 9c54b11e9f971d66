"""How well each fidelity ranks patterns: the fidelity study's report (text, JSON, HTML, PNG).

Each level trains seeds of its own and the reference (the last) is scored on the test split,
so a level shares no seed and no scored image with the reference. Per level: the cost of a
trial, the spread of one trial over seeds, how well its seeds agree (the mean Spearman over
every pair of its seeds) and the reliability of its mean over them (Spearman-Brown), the raw
Spearman and Kendall of its ranking (pattern means) against the reference's, the attenuation cap
sqrt(reliability x the reference's) that the seed noise of both means puts on that Spearman, and
the disattenuated Spearman (raw / cap), each with a bootstrap 95% interval that resamples the
patterns and, within each level, its seeds. The recommendation: the cheapest level whose
disattenuated Spearman reaches the target.
"""
from __future__ import annotations

import html
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
from ..stats import (
    Estimate,
    attenuation_cap,
    disattenuate,
    kendall,
    mean_pair_correlation,
    pooled_std,
    spearman,
    spearman_brown,
    spearman_matrix,
)
from ..text_tables import format_table, html_table, markdown_table

_log = logging.getLogger(__name__)

UNDEFINED_SHARE = 0.05  # resamples a statistic may be undefined in before its interval is


def _num(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "-"


def _text(e: Estimate, spec: str = "+.2f") -> str:
    """"value [low, high]"; "-" for what is not known (the value, or its interval)."""
    return f"{_num(e.value, spec)} [{_num(e.low, spec)}, {_num(e.high, spec)}]" \
        if math.isfinite(e.value) else "-"


@dataclass(frozen=True)
class LevelResult:
    """One fidelity's numbers over the patterns every level finished (the correlations with
    bootstrap 95% intervals; the reference's own against itself are unknown)."""
    name: str
    fidelity: str                  # in words
    seeds: int
    seconds: float                 # median wall time of one trial
    mean_accuracy: float           # on the split the level is scored on
    seed_std: float                # pooled within-pattern std of one trial's accuracy
    spread: float                  # std of the pattern means
    seed_spearman: Estimate        # mean Spearman over every pair of the level's seeds
    reliability: Estimate          # of the mean over ``seeds`` (Spearman-Brown, k = seeds)
    vs_reference: Estimate         # raw Spearman of the pattern means with the reference's
    kendall_vs_reference: Estimate
    cap: Estimate                  # attenuation cap: sqrt(reliability x the reference's)
    disattenuated: Estimate        # vs_reference / cap (unknown where a reliability is <= 0)


@dataclass(frozen=True)
class PatternResult:
    label: str
    hash: str
    mean_distance: float
    accuracies: dict[str, list[float]]   # by level: one per seed, in seed order


def _estimate(data: float | dict[str, float] | None) -> Estimate:
    """An Estimate as a report stores it; a bare number (older reports) has no interval and
    a missing one is unknown."""
    if data is None:
        return Estimate.unknown()
    return Estimate(**data) if isinstance(data, dict) else Estimate(data, math.nan, math.nan)


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
    independent: bool                    # no level shares a seed or scored image with the
    #                                      reference (False: its correlations are inflated)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FidelityReport":
        """The report of :meth:`to_json`; one written before levels had seeds of their own
        reads with its correlations' missing intervals, cap and disattenuated Spearman
        unknown, and ``independent`` False."""
        estimates = ("seed_spearman", "reliability", "vs_reference", "kendall_vs_reference",
                     "cap", "disattenuated")
        levels = tuple(LevelResult(**{**lv, **{k: _estimate(lv.get(k)) for k in estimates}})
                       for lv in data["levels"])
        return cls(**{**data, "levels": levels, "independent": data.get("independent", False),
                      "patterns": tuple(PatternResult(**p) for p in data["patterns"])})

    def table(self) -> tuple[list[str], list[list[Any]]]:
        headers = ["level", "fidelity", "seeds", "s/trial", "x cost", "accuracy", "seed std",
                   "means std", "seed-seed rho", "mean reliability", "rho vs reference",
                   "attenuation cap", "disattenuated rho", "tau vs reference"]
        top = self.levels[-1].seconds
        rows = [[lv.name, lv.fidelity, lv.seeds, _num(lv.seconds, ".1f"),
                 _num(lv.seconds / top, ".2f"), f"{lv.mean_accuracy:.4f}",
                 _num(lv.seed_std, ".4f"), f"{lv.spread:.4f}", _text(lv.seed_spearman),
                 _text(lv.reliability),
                 *([_text(e) for e in (lv.vs_reference, lv.cap, lv.disattenuated,
                                              lv.kendall_vs_reference)]
                   if i < len(self.levels) - 1 else ["(reference)"] * 4)]
                for i, lv in enumerate(self.levels)]
        return headers, rows

    def text(self) -> str:
        n = len(self.patterns)
        head = (f"{n} patterns at {len(self.levels)} fidelities (reference: "
                f"{self.levels[-1].name}); 95% bootstrap intervals over patterns and, within "
                f"each level, its seeds ({self.resamples} resamples)")
        notes = []
        if not self.independent:
            notes.append("Levels share seeds or scored images with the reference (a study made "
                         "before each level had seeds of its own and the reference was scored "
                         "on the test split): their correlations with it are inflated")
        if self.left_out:
            notes.append(f"{self.left_out} patterns left out: not every level has finished "
                         f"them")
        if self.pending:
            notes.append(f"{self.pending} trials still queued or running: run the command again")
        return "\n".join([head, format_table(*self.table()), "", self.verdict, *notes])


STATISTICS = ("seed_spearman", "reliability", "vs_reference", "kendall_vs_reference", "cap",
              "disattenuated")


def _statistics(acc: dict[str, np.ndarray], reference: str, rows: np.ndarray,
                cols: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """:data:`STATISTICS` of each level on the sample that draws patterns ``rows`` and, per
    level, seeds ``cols`` (indices into its columns; a seed drawn twice is never paired with
    itself), the reliability for a mean over as many seeds as the level has."""
    seed_r, reliability, means = {}, {}, {}
    for name, a in acc.items():
        a = a[rows]
        counts = np.bincount(cols[name], minlength=a.shape[1])
        seed_r[name] = mean_pair_correlation(spearman_matrix(a), counts)
        reliability[name] = spearman_brown(seed_r[name], a.shape[1])
        means[name] = a[:, cols[name]].mean(axis=1)
    out = {}
    for name in acc:
        if name == reference:
            out[name] = [seed_r[name], reliability[name]] + [math.nan] * 4
            continue
        raw = spearman(means[name], means[reference])
        out[name] = [seed_r[name], reliability[name], raw,
                     kendall(means[name], means[reference]),
                     attenuation_cap(reliability[name], reliability[reference]),
                     disattenuate(raw, reliability[name], reliability[reference])]
    return out


def _interval(value: float, boots: np.ndarray) -> Estimate:
    """``value`` with the percentile 95% interval of its resamples; unknown bounds where it is
    undefined (NaN) in more than :data:`UNDEFINED_SHARE` of them (the defined ones alone
    would give a narrower interval than the data do)."""
    defined = boots[np.isfinite(boots)]
    if not len(defined) or len(defined) < (1 - UNDEFINED_SHARE) * len(boots):
        return Estimate(value, math.nan, math.nan)
    low, high = np.percentile(defined, [2.5, 97.5]).tolist()
    return Estimate(value, low, high)


def level_statistics(acc: dict[str, np.ndarray], reference: str, resamples: int,
                     seed: int = 0) -> dict[str, dict[str, Estimate]]:
    """:data:`STATISTICS` of each level (accuracies: patterns x seeds) against ``reference``,
    with percentile 95% intervals from ``resamples`` bootstrap resamples of the patterns,
    seeded by ``seed`` (the same draw at every level: they are paired). The seeds are kept:
    the reliabilities already price their noise, and with 3 seeds a resample of them often
    holds one seed pair, which left most intervals undefined. The reference's own
    correlations with itself are unknown."""
    names = list(acc)
    n = len(acc[reference])
    whole = {name: np.arange(a.shape[1]) for name, a in acc.items()}
    point = _statistics(acc, reference, np.arange(n), whole)
    rng = np.random.default_rng(seed)
    boots = {name: np.empty((resamples, len(STATISTICS))) for name in names}
    for b in range(resamples):
        rows = rng.integers(0, n, n)
        for name, values in _statistics(acc, reference, rows, whole).items():
            boots[name][b] = values
    return {name: {stat: _interval(point[name][i], boots[name][:, i])
                   for i, stat in enumerate(STATISTICS)} for name in names}


def _seeds_used(runs: dict[str, dict[int, float]]) -> list[int]:
    """The seeds a level's report uses: the first k in seed order, k as large as possible
    without losing a pattern that has the first (a study cut short, seed-major, has finished
    each level's first seed everywhere before its second anywhere)."""
    order = sorted({s for seeds in runs.values() for s in seeds})

    def having(k: int) -> int:
        return sum(1 for seeds in runs.values() if set(order[:k]) <= set(seeds))

    return order[:max((k for k in range(1, len(order) + 1) if having(k) == having(1)),
                      default=0)]


def one_run_rho(level: LevelResult) -> float:
    """How one run of ``level`` would rank like the reference averaged over many seeds: its
    disattenuated Spearman times the square root of its seed-to-seed Spearman (the reliability
    of one run). NaN where either is unknown or the seed-to-seed Spearman is not positive."""
    dis, r = level.disattenuated.value, level.seed_spearman.value
    if not (math.isfinite(dis) and math.isfinite(r)) or r <= 0:
        return math.nan
    return dis * math.sqrt(r)


def seeds_to_reach(level: LevelResult, target: float) -> int | None:
    """How many seeds per pattern at ``level`` make their mean rank like the reference at
    ``target`` (Spearman-Brown on the seed-to-seed Spearman); None where no number can."""
    dis, r = level.disattenuated.value, level.seed_spearman.value
    if not (math.isfinite(dis) and math.isfinite(r)) or r <= 0 or dis <= target:
        return None
    need = (target / dis) ** 2  # the reliability the mean needs
    return max(1, math.ceil(need * (1 - r) / (r * (1 - need))))


def recommend(levels: list[LevelResult], target: float) -> tuple[str | None, str]:
    """The cheapest level below the reference one run of which ranks patterns like the
    reference at ``target`` (:func:`one_run_rho`: a search trains each pattern once), and the
    verdict in words; when none does, the best one run reaches and the cheapest level whose
    mean over a few seeds would.

    Disattenuated, not raw: the raw Spearman is held down by the seed noise of both means, so
    it depends on how many seeds this study trained (a noisy reference caps every level). The
    disattenuated Spearman estimates how the level's ranking, averaged over many seeds, agrees
    with the reference's averaged likewise; one run of the level carries its own seed noise on
    top, which the square root of its seed-to-seed Spearman prices."""
    reference = levels[-1]
    rel = reference.reliability
    note = "" if not math.isfinite(rel.value) else (
        f" The reference's mean over {reference.seeds} seeds has reliability "
        f"{_text(rel, '.2f')}.")
    below = [lv for lv in levels[:-1] if math.isfinite(one_run_rho(lv))]
    undefined = [lv.name for lv in levels[:-1] if lv not in below]
    if undefined:
        note += (f" Not judged: {', '.join(undefined)} (no disattenuated Spearman or no "
                 f"positive seed-to-seed Spearman: the reliability of its mean or the "
                 f"reference's is not positive, or unknown).")
    ok = [lv for lv in below if one_run_rho(lv) >= target and math.isfinite(lv.seconds)]
    if ok:
        best = min(ok, key=lambda lv: lv.seconds)
        lows = (best.disattenuated.low, best.seed_spearman.low)
        low = lows[0] * math.sqrt(max(lows[1], 0.0)) if all(map(math.isfinite, lows)) \
            else math.nan
        unsure = "" if low >= target else ", though an interval is not known" \
            if math.isnan(low) else ", though not at the lower ends of the intervals"
        return best.name, (f"Recommended: {best.name} ({best.fidelity}): one run of it ranks "
                           f"like {reference.name} at about Spearman {one_run_rho(best):+.2f} "
                           f">= {target:g} (disattenuated {_text(best.disattenuated)} x sqrt "
                           f"of its seed-to-seed Spearman {_text(best.seed_spearman)}; raw "
                           f"{_text(best.vs_reference)} under a cap of "
                           f"{best.cap.value:.2f}){unsure}, at "
                           f"{best.seconds / reference.seconds:.2f}x the reference's cost per "
                           f"trial.{note}")
    if not below:
        return None, f"No level could be compared with {reference.name}.{note}"
    top = max(below, key=one_run_rho)
    verdict = (f"No level's single run ranks like {reference.name} at Spearman >= "
               f"{target:g}: the best, {top.name} ({top.fidelity}), reaches about "
               f"{one_run_rho(top):+.2f} (disattenuated {_text(top.disattenuated)}, "
               f"seed-to-seed {_text(top.seed_spearman)}; raw {_text(top.vs_reference)}).")
    costs = [(n * lv.seconds, lv, n) for lv in below
             if (n := seeds_to_reach(lv, target)) is not None and math.isfinite(lv.seconds)]
    if costs:
        _, lv, n = min(costs, key=lambda c: c[0])
        verdict += (f" A mean over {n} seeds of {lv.name} would reach it (Spearman-Brown), "
                    f"at {n * lv.seconds / reference.seconds:.2f}x the reference's cost per "
                    f"pattern.")
    return None, verdict + note


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
    seeds it reports (:func:`_seeds_used`), the statistics by :func:`level_statistics`."""
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
    stats = level_statistics(acc, names[-1], resamples)
    levels = []
    for name, fidelity in table.levels:
        a = acc[name]
        seconds = [r.seconds for r in table.runs if r.level == name]
        finite = [s for s in seconds if math.isfinite(s)]
        levels.append(LevelResult(
            name, fidelity.describe(), a.shape[1],
            float(np.median(finite)) if finite else math.nan, float(a.mean()),
            pooled_std(list(a))[0], float(a.mean(axis=1).std(ddof=1)), **stats[name]))
    recommended, verdict = recommend(levels, target)
    patterns = tuple(PatternResult(c.label, c.pattern.hash, distance_stats(c.pattern).mean,
                                   {n: acc[n][i].tolist() for n in names})
                     for i, c in enumerate(complete))
    used = [set(seeds[n]) for n in names]
    independent = table.scored_on_test(names[-1]) and \
        sum(map(len, used)) == len(set().union(*used))  # no seed at two levels
    return FidelityReport(tuple(levels), patterns, target, recommended, verdict,
                          len(table.patterns) - len(complete), table.pending, resamples,
                          independent)


def fidelity_figure(report: FidelityReport) -> go.Figure:
    """Each pattern's mean accuracy at every lower level against the reference's, with error
    bars of one seed std."""
    below, ref = report.levels[:-1], report.levels[-1]
    fig = make_subplots(rows=1, cols=len(below), subplot_titles=[
        f"{lv.name}: rho {_num(lv.vs_reference.value, '+.2f')} (disattenuated "
        f"{_num(lv.disattenuated.value, '+.2f')})" for lv in below])
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
