"""One self-contained HTML report of a study (plotly.js embedded once; works offline)."""
from __future__ import annotations

import html
import json
import math
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from search_spaces import (
    TEMPLATES,
    Pattern,
    distance_stats,
    offsets_in_words,
    template_pattern,
)

from ..engine.spec import PatternSpec
from ..errors import UserError
from ..search.config import VAL_ACCURACY, Fidelity, search_fidelity, stored_config
from ..search.experiment.evidence import Evidence, answer
from ..search.experiment.study import study_evidence
from ..search.record import TrialRecord, TrialRow
from ..stats import spearman, thin
from ..text_tables import html_table
from .analysis import (
    Analysis,
    PrincipleTest,
    analyze,
    confirmed_table,
    correlation_table,
    evidence_lines,
    principle_rows,
    regression_caption,
    regression_table,
    study_rows,
    template_table,
    verdict,
)
from .feature_study import FeatureRow, importance_figure


class Figure(NamedTuple):
    id: str                # stable: the dashboard and scripts find a figure by it
    title: str             # the section title shown to people
    figure: go.Figure


def _scatter(rows: list[TrialRow], x: str, title: str, fit: bool) -> go.Figure:
    """Accuracy against the rows' field ``x``: the fit over every row, the markers of an even
    sample above FIGURE_TRIALS (every template run kept)."""
    xs = np.array([getattr(r, x) for r in rows], dtype=float)
    ys = np.array([r.accuracy for r in rows])
    fig = go.Figure()
    shown = [rows[i] for i in thin(len(rows), FIGURE_TRIALS,
                                   keep=[i for i, r in enumerate(rows) if r.template])]
    for name, group, color in (("searched patterns", [r for r in shown if not r.template],
                                "#1f77b4"),
                               ("template runs", [r for r in shown if r.template], "#d62728")):
        if group:
            fig.add_trace(go.Scatter(
                x=[getattr(r, x) for r in group], y=[r.accuracy for r in group], mode="markers",
                name=name, marker={"color": color},
                text=[f"trial {r.trial} {r.template} ({r.hash})" for r in group]))
    if fit and len(rows) >= 3 and np.ptp(xs) > 0:
        slope, intercept = np.polyfit(xs, ys, 1)
        grid = np.linspace(xs.min(), xs.max(), 50)
        fig.add_trace(go.Scatter(x=grid, y=slope * grid + intercept, mode="lines",
                                 name=f"fit: {slope:+.4f} per unit"))
        title += f" (Spearman {spearman(xs, ys):+.3f}, n={len(rows)})"
    if len(shown) < len(rows):
        title += f"<br><sub>markers: {len(shown)} of {len(rows)} trials, evenly spaced</sub>"
    fig.update_layout(title=title, xaxis_title=x.replace("_", " "), yaxis_title="val accuracy")
    return fig


_TITLE_LINE = 24  # px: Plotly's title font (17 px) takes 1.3 x that a line


def _heatmap(pattern: Pattern, title: str) -> go.Figure:
    n = pattern.num_nodes
    a = np.zeros((n, n))
    offset = 0
    for block in pattern.blocks:
        for j, i in block.edges():
            a[offset + i, offset + j] = 1
        offset += block.num_layers + 1
    stats = distance_stats(pattern)
    fig = go.Figure(go.Heatmap(z=a, colorscale=[[0, "#ffffff"], [1, "#08306b"]], showscale=False))
    text = f"{title}<br>{pattern.connections} connections, MBD {stats.mbd}, mean {stats.mean:.2f}"
    # The title hangs from below the figure's tool bar, over a margin that holds every line
    # (Plotly's default puts a title's first baseline mid-margin, so a long one ran into the
    # plot; optuna-dashboard's card showed it).
    top = 50 + _TITLE_LINE * (text.count("<br>") + 1)
    height = min(450, 320 + top)  # optuna-dashboard draws every figure 450 px high
    fig.update_layout(title={"text": text, "y": 1 - 44 / height, "yref": "container",
                             "yanchor": "top"},
                      xaxis_title="reads node", yaxis_title="node", width=380, height=height,
                      yaxis={"autorange": "reversed", "scaleanchor": "x"},
                      margin={"l": 40, "r": 10, "t": top, "b": 40})
    return fig


def confirmed_figure(ev: Evidence) -> go.Figure:
    """Each confirmed pattern's brief (one-run) accuracy against its confirmed mean, with the
    mean's 95% interval: at the search's fidelity a pick that was lucky once falls below the
    diagonal; at a higher one, a brief ranking that held would rise left to right."""
    fig = go.Figure()
    with_brief = [c for c in ev.confirmed if np.isfinite(c.brief)]
    for label, group, color in (
            ("searched patterns", [c for c in with_brief if c.label == "search"], "#1f77b4"),
            ("templates", [c for c in with_brief if c.label != "search"], "#d62728")):
        if group:
            fig.add_trace(go.Scatter(
                x=[c.brief for c in group], y=[c.mean.mean.value for c in group], mode="markers",
                name=label, marker={"color": color, "size": 9},
                error_y={"type": "data", "symmetric": False,
                         "array": [c.mean.mean.high - c.mean.mean.value for c in group],
                         "arrayminus": [c.mean.mean.value - c.mean.mean.low for c in group]},
                text=[f"{c.name} ({c.hash}), {c.mean.n} seeds" for c in group]))
    title = "brief accuracy (one run) vs. confirmed mean (95% CI)"
    if with_brief and ev.same_fidelity:  # the same training: a lucky pick falls below it
        lo = min(min(c.brief, c.mean.mean.value) for c in with_brief)
        hi = max(max(c.brief, c.mean.mean.value) for c in with_brief)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="confirmed = brief",
                                 line={"dash": "dot", "color": "#888"}))
    elif with_brief:
        title += "<br><sub>confirmed at a higher fidelity: compare the order, not the levels</sub>"
    fig.update_layout(title=title, xaxis_title="brief accuracy: the run it was chosen by",
                      yaxis_title="confirmed mean accuracy")
    return fig


FIGURE_TRIALS = 2000
"""Above this many trials a figure draws an even sample (:func:`nas.stats.thin`) and says so;
its statistics still use every trial."""


class SearchView(NamedTuple):
    """The trials Optuna's plots of the search draw: ``study`` (renumbered from 0 when it is a
    copy), each one's number in the stored study, and a note on what was left out."""
    study: optuna.Study
    numbers: list[int]
    note: str


def search_view(study: optuna.Study, limit: int | None = FIGURE_TRIALS) -> SearchView:
    """An in-memory copy of the study without its confirm and fidelity trials (their history
    would otherwise show those runs). Above ``limit`` trials (None: no limit): every k-th and
    every one that set a new best, so the best-so-far line is exact."""
    trials = study.get_trials(deepcopy=False)
    search = [t for t in trials if not TrialRecord.from_trial(t).is_apart]
    limit = len(search) if limit is None else limit
    if len(search) == len(trials) and len(trials) <= limit:
        return SearchView(study, [t.number for t in trials], "")
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    best, records = -math.inf, []
    for i, t in enumerate(search):
        if t.state == TrialState.COMPLETE and t.values and sign * t.values[0] > best:
            best = sign * t.values[0]
            records.append(i)
    shown = [search[i] for i in thin(len(search), limit, keep=records)]
    view = optuna.create_study(directions=study.directions, study_name=study.study_name)
    view.add_trials(shown)
    note = "" if len(shown) == len(search) else \
        f"{len(shown)} of {len(search)} trials: every new best and an even sample of the rest"
    return SearchView(view, [t.number for t in shown], note)


def figures(study: optuna.Study, ev: Evidence | None = None,
            features: list[FeatureRow] | None = None) -> list[Figure]:
    """Every plot the report shows, in order (``ev``: the study's evidence, ``features``: its
    trained trials' feature rows, when known)."""
    rows = study_rows(study)
    ev = study_evidence(study) if ev is None else ev
    figs: list[Figure] = []
    multi = len(study.directions) > 1
    vis = optuna.visualization
    if multi:
        view = search_view(study, limit=None)   # the front needs every trial
        figs.append(Figure("pareto-front", "Pareto front", vis.plot_pareto_front(
            view.study, target_names=["accuracy", "cost"])))
    else:
        view = search_view(study)
        history = vis.plot_optimization_history(view.study, target_name=VAL_ACCURACY)
        for trace in history.data:   # the x axis counts the stored study's trials
            if trace.x is not None:
                trace.x = [view.numbers[int(x)] for x in trace.x]
        if view.note:
            history.update_layout(title=f"Optimization history<br><sub>{view.note}</sub>")
        figs.append(Figure("optimization-history", "Optimization history", history))
    if ev.confirmed:
        figs.append(Figure("confirmed", "Confirmed: brief accuracy vs. confirmed mean",
                           confirmed_figure(ev)))
    if rows:
        budget, at_budget = principle_rows(study, rows)
        figs.append(Figure("accuracy-vs-mbd", "Accuracy vs. MBD", _scatter(
            at_budget, "mbd", f"accuracy vs. MBD at {budget} connections", fit=True)))
        figs.append(Figure("accuracy-vs-mean-distance", "Accuracy vs. mean distance", _scatter(
            at_budget, "mean_distance", f"accuracy vs. mean distance at {budget} connections",
            fit=True)))
        for x, title in (("connections", "connections"), ("params", "parameters")):
            if len({getattr(r, x) for r in rows}) > 1:  # a plot whose x has one value says nothing
                figs.append(Figure(f"accuracy-vs-{x}", f"Accuracy vs. {title}", _scatter(
                    rows, x, f"accuracy vs. {title} (all trials)", fit=False)))
    if len(rows) >= 2:
        try:
            importances = importance_figure(study, FIGURE_TRIALS, features)
        except (RuntimeError, ValueError, ZeroDivisionError) as e:  # too few or uniform trials
            importances = _note(f"not available: {e}")
        figs.append(Figure("feature-importances", "Which pattern features matter",
                           importances))
    return figs + _pattern_figures(study, rows)


TEMPLATE_HEATMAPS = 3  # log and the first other templates the study trained


def _pattern_figures(study: optuna.Study, rows: list[TrialRow]) -> list[Figure]:
    """Heatmaps of the top five patterns, and of log and the templates the study trained at
    the same depth, with their accuracies."""
    top = sorted(rows, key=lambda r: -r.accuracy)[:5]
    specs: dict[int, dict[str, Any]] = {}
    roles: dict[int, str] = {}
    for t in study.get_trials(deepcopy=False):
        if (record := TrialRecord.from_trial(t)).spec is not None:
            specs[t.number], roles[t.number] = record.spec, record.role
    figs = []
    patterns = [PatternSpec.from_dict(specs[r.trial]).pattern for r in top]
    for rank, (r, pattern) in enumerate(zip(top, patterns), 1):
        role = roles[r.trial]
        figs.append(Figure(f"top-{rank}-pattern", f"Top {rank} pattern", _heatmap(
            pattern, f"#{rank}: trial {r.trial} ({role}), accuracy {r.accuracy:.4f}<br>"
                     + "<br>".join(textwrap.wrap(offsets_in_words(pattern), 44)))))
    if top:
        best = patterns[0]
        trained = [r.template for r in rows if r.template in TEMPLATES]
        for name in list(dict.fromkeys(["log", *trained]))[:TEMPLATE_HEATMAPS]:
            # The pattern its runs trained (at the study's budget, not the template's own K),
            # the most-run one where runs differ (styles, budget modes), and those runs only.
            by_hash = Counter(r.hash for r in rows if r.template == name)
            if by_hash:
                hash_ = by_hash.most_common(1)[0][0]
                runs = [r for r in rows if r.template == name and r.hash == hash_]
                pattern = PatternSpec.from_dict(specs[runs[0].trial]).pattern
                title = (f"{name} template as trained: accuracy "
                         f"{np.mean([r.accuracy for r in runs]):.4f} over {len(runs)} seeds")
            else:
                pattern = template_pattern(name, best.stages, style=best.style)
                title = f"{name} template: not trained in this study"
            figs.append(Figure(f"{name}-pattern", f"{name} pattern", _heatmap(pattern, title)))
    return figs


def _note(text: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=html.escape(text), showarrow=False, x=0.5, y=0.5)
    return fig


def write_report(study: optuna.Study, out: str | Path, principle: PrincipleTest | None = None,
                 figs: list[Figure] | None = None) -> Path:
    """Write the report page (``principle``: the study's principle test, when there is one;
    ``figs``: the study's :func:`figures`, when already built); returns its path."""
    out = Path(out)
    ev = study_evidence(study)
    parts = []
    for k, fig in enumerate(figures(study, ev) if figs is None else figs):
        body = fig.figure.to_html(full_html=False, include_plotlyjs=(k == 0), div_id=fig.id,
                                  config={"displaylogo": False})
        small = " small" if fig.id.endswith("pattern") else ""
        parts.append(f'<section class="fig{small}" id="section-{fig.id}">'
                     f'<h2>{html.escape(fig.title)}</h2>{body}</section>')
    searched_at = search_fidelity(study)
    fidelity = searched_at.describe() if searched_at else "the study's brief training"
    dataset = (stored_config(study) or {}).get("data", {}).get("name", "")
    principle_text = "" if principle is None else (
        "<h2>The principle in this study</h2>" + "".join(
            f"<p>{html.escape(line)}</p>" for line in verdict(principle, ev, fidelity, dataset)))
    summary = (f"<h2>Which pattern to train</h2><p>{html.escape(answer(ev).sentence)}</p>"
               + principle_text + "<h2>How far the numbers can be trusted</h2><ul>"
               + "".join(f"<li>{html.escape(line)}</li>" for line in evidence_lines(ev))
               + "</ul>")
    if ev.confirmed:
        summary += ("<h2>Confirmed (mean over seeds, 95% t-interval; difference from log: "
                    "seeds paired, variance pooled) at "
                    f"{html.escape(_fidelity_text(ev.confirm_fidelity))}</h2>"
                    + html_table(*confirmed_table(ev)))
    if principle is not None:
        summary += ("<h2>Principle: accuracy vs. backprop distance at "
                    f"{principle.budget} connections, {principle.style} "
                    f"(n={principle.trials_at_budget})</h2>"
                    + html_table(*correlation_table(principle)))
        if principle.regression is not None:
            head, *notes = regression_caption(principle.regression)
            summary += (f"<h2>{html.escape(head)}</h2>"
                        + html_table(*regression_table(principle.regression))
                        + "".join(f"<p>{html.escape(note)}</p>" for note in notes))
        if principle.templates:
            summary += ("<h2>Templates by style and budget (accuracy over seeds)</h2>"
                        + html_table(*template_table(principle)))
    trials = study.get_trials(deepcopy=False)
    counts = ", ".join(f"{s.name.lower()} {n}" for s in TrialState
                       if (n := sum(t.state == s for t in trials)))
    name = html.escape(study.study_name)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>skipnas report: {name}</title>
<style>body{{font-family:sans-serif;margin:24px;}} section.small{{display:inline-block;}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head>
<body><h1>skipnas study {name}</h1><p>Trials: {counts}.</p>
{summary}
{''.join(parts)}
</body></html>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out


def _fidelity_text(fidelity: dict[str, Any] | None) -> str:
    return Fidelity.from_dict(fidelity).describe() if fidelity else "the search's fidelity"


def write_png(fig: go.Figure, out: str | Path, width: int = 900, height: int = 560) -> Path:
    """Render one figure to PNG with headless Chromium (Debian package ``chromium``)."""
    import shutil
    import subprocess
    import tempfile

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise UserError("PNG export needs Chromium: apt-get install chromium")
    out = Path(out).resolve()
    fig = go.Figure(fig).update_layout(width=width, height=height, margin={"t": 60})
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "figure.html"
        body = fig.to_html(full_html=False, include_plotlyjs=True,
                           config={"displayModeBar": False})
        page.write_text(f"<html><head><meta charset='utf-8'></head><body style='margin:0'>{body}"
                        f"</body></html>", encoding="utf-8")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp}/profile", "--virtual-time-budget=10000",
                        "--hide-scrollbars", f"--window-size={width},{height}",
                        f"--screenshot={out}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    return out


def publish_study(study: optuna.Study, out: str | Path) -> Analysis:
    """A study's published results in ``out``: analyze.json, report.html and
    accuracy_vs_mean_distance.png (needs Chromium); returns the analysis."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = analyze(study)
    (out / "analyze.json").write_text(json.dumps(result.to_json(), indent=1) + "\n")
    figs = figures(study)
    write_report(study, out / "report.html", result.principle, figs)
    fig = next(f.figure for f in figs if f.id == "accuracy-vs-mean-distance")
    write_png(fig, out / "accuracy_vs_mean_distance.png")
    return result
