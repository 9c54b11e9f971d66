"""Zero-cost proxies side by side on a tabular benchmark: every pattern's network scored at
initialisation on one fixed batch (nas.engine.proxies) next to skipnas' distance scores
(search_spaces.features.SCORES), each ranked against the table's mean accuracy (Spearman and
Kendall, bootstrap 95% CIs, permutation p), plus one combined score; JSON, Markdown, HTML and
PNG."""
from __future__ import annotations

import html
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from search_spaces.features import SCORES

from ..engine.proxies import PROXIES, measure_proxies
from ..engine.spec import make_spec
from ..errors import UserError
from ..search.experiment.bench import Bench, Reliability
from ..stats import RESAMPLE_LIMIT, RankCorrelation, correlate
from ..text_tables import format_table, html_table, markdown_table
from .analysis import SCORE_SIGN, Table

if TYPE_CHECKING:
    import torch

    from ..search.config import StudyConfig

_log = logging.getLogger(__name__)

DISTANCE, PROXY, COMBINED = "distance", "proxy", "combined"  # a row's kind
# The proxies the combined score may take (the network ones; params and FLOPs are not).
COMBINE_CANDIDATES = ("snip", "grad_norm", "synflow", "naswot", "jacob_cov")
# A product over layers spans orders of magnitude: its log is what is z-scored.
LOG_SCALED = frozenset({"synflow"})
COMBINED_FROM = "-mean_distance+"  # the combined row: z(-mean_distance) + z(the best proxy)
SIGN_NOTE = SCORE_SIGN


@dataclass(frozen=True)
class ScoreRow:
    """One score against the table's mean accuracy."""
    score: str
    kind: str                    # distance | proxy | combined
    n: int                       # patterns with a finite score: the ones correlated
    spearman: RankCorrelation    # all NaN when the score is constant or known for < 3 patterns
    kendall: RankCorrelation
    seconds: float               # mean per pattern

    def to_json(self) -> dict[str, Any]:
        """Its fields by name (NaN kept: JSON's NaN)."""
        return {"score": self.score, "kind": self.kind, "n": self.n,
                "spearman": self.spearman.to_json(), "kendall": self.kendall.to_json(),
                "seconds": self.seconds}


@dataclass(frozen=True)
class PatternScores:
    """One pattern: its mean accuracy, every score, and the seconds each took."""
    hash: str
    accuracy: float
    scores: dict[str, float]
    seconds: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProxyReport:
    """Every score of every pattern of a benchmark, and how well each ranks the table."""
    bench: str
    batch: int                   # images in the one batch every network is scored on
    seed: int                    # of the networks' initialisation
    device: str
    resamples: int
    combined_from: str | None    # the proxy the combined score adds to the distance
    rows: tuple[ScoreRow, ...]
    patterns: tuple[PatternScores, ...]
    reliability: Reliability | None = None   # the table's (None: one seed per pattern)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN and infinities kept as JSON's NaN and Infinity)."""
        return {"bench": self.bench, "patterns": len(self.patterns), "batch": self.batch,
                "seed": self.seed, "device": self.device, "resamples": self.resamples,
                "sign": SIGN_NOTE, "combined_from": self.combined_from,
                "reliability": None if self.reliability is None else
                {**asdict(self.reliability), "ceiling": self.reliability.ceiling},
                "scores": [r.to_json() for r in self.rows],
                "per_pattern": [p.to_json() for p in self.patterns]}

    def head(self) -> str:
        intervals = (f"bootstrap CIs and permutation p ({self.resamples} resamples)"
                     if len(self.patterns) <= RESAMPLE_LIMIT else
                     "asymptotic CIs (Fisher z) and p")
        return (f"{self.bench}: {len(self.patterns)} patterns, networks initialised with seed "
                f"{self.seed} and scored on one batch of {self.batch} training images "
                f"({self.device}); correlations with the mean accuracy over seeds, 95% "
                f"{intervals}; {SIGN_NOTE}"
                + ("" if self.reliability is None else f"; {self.reliability.text()}"))

    def notes(self) -> list[str]:
        out = []
        if self.combined_from is not None:
            log = "log " if self.combined_from in LOG_SCALED else ""
            out.append(f"{COMBINED_FROM}{self.combined_from}: z(-mean_distance) + "
                       f"z({log}{self.combined_from}), the proxy picked as the one of "
                       f"{', '.join(COMBINE_CANDIDATES)} with the highest Spearman on this "
                       f"same table, so its r is optimistic.")
        out.append("params and flops: their seconds are the spec's measurement (building "
                   "the network and counting its FLOPs).")
        return out

    def table(self) -> Table:
        headers = [f"score ({SIGN_NOTE})", "kind", "Spearman r [95% CI]", "p",
                   "Kendall tau [95% CI]", "p", "n", "s/pattern"]
        rows = [[r.score, r.kind, r.spearman.r.text("+.3f"), _p(r.spearman),
                 r.kendall.r.text("+.3f"), _p(r.kendall), str(r.n), f"{r.seconds:.4f}"]
                for r in self.rows]
        return headers, rows

    def text(self) -> str:
        return "\n".join([self.head(), "", format_table(*self.table()), "", *self.notes()])


def _p(c: RankCorrelation) -> str:
    return f"{c.p_value:.4f}" if math.isfinite(c.p_value) else "-"


def load_batch(cfg: "StudyConfig", size: int,
               device: "torch.device | str" = "cpu") -> tuple["torch.Tensor", "torch.Tensor"]:
    """The first ``size`` images of the config's training split (a seeded permutation of the
    dataset's), normalised as in training, and their labels."""
    bundle = cfg.data.load(device)
    if not 1 <= size <= len(bundle.train):
        raise UserError(f"--batch {size}: the training split of {cfg.data.name} has "
                        f"{len(bundle.train)} images")
    return bundle.normalise(bundle.train.images[:size]), bundle.train.labels[:size]


def score_patterns(bench: Bench, images: "torch.Tensor", labels: "torch.Tensor", seed: int = 0,
                   progress: bool = True) -> list[PatternScores]:
    """Every distance score and proxy of every pattern of ``bench`` (networks built per its
    architecture, initialised from ``seed``), each timed."""
    from tqdm.auto import tqdm

    out = []
    for entry in tqdm(list(bench.entries.values()), disable=not progress, unit="pattern"):
        scores, seconds = {}, {}
        for name, score in SCORES.items():
            clock = time.perf_counter()
            scores[name] = float(score(entry.pattern))
            seconds[name] = time.perf_counter() - clock
        clock = time.perf_counter()
        spec = make_spec(entry.pattern, bench.cfg.architecture)
        spec_seconds = time.perf_counter() - clock
        for name, m in measure_proxies(spec, images, labels, seed).items():
            scores[name] = m.score
            seconds[name] = spec_seconds if name in ("params", "flops") else m.seconds
        out.append(PatternScores(entry.pattern.hash, entry.accuracy, scores, seconds))
    return out


def rank_correlations(values: np.ndarray, accuracy: np.ndarray,
                      resamples: int) -> tuple[int, RankCorrelation, RankCorrelation]:
    """(n, Spearman, Kendall) of the finite ``values`` against their patterns' accuracy."""
    finite = np.isfinite(values)
    x, y = values[finite], accuracy[finite]
    out = []
    for method in ("spearman", "kendall"):
        if len(x) < 3 or np.ptp(x) == 0:
            out.append(RankCorrelation.unknown())
            continue
        out.append(correlate(x, y, method, resamples=resamples))
    return int(finite.sum()), out[0], out[1]


def zscore(values: np.ndarray) -> np.ndarray:
    """(v - mean) / std over the finite values (NaN elsewhere; 0 for a constant)."""
    finite = np.isfinite(values)
    out = np.full(len(values), math.nan)
    std = values[finite].std() if finite.any() else 0.0
    out[finite] = (values[finite] - values[finite].mean()) / std if std > 0 else 0.0
    return out


def combined_score(distance: np.ndarray, proxy: np.ndarray, name: str) -> np.ndarray:
    """z(distance score) + z(proxy score), each higher-is-better; a :data:`LOG_SCALED` proxy
    enters as its log (NaN where either is not finite)."""
    if name in LOG_SCALED:
        with np.errstate(divide="ignore", invalid="ignore"):  # <= 0: NaN, left out
            proxy = np.where(proxy > 0, np.log(np.where(proxy > 0, proxy, 1.0)), math.nan)
    return zscore(distance) + zscore(proxy)


def proxy_report(bench: Bench, scored: list[PatternScores], batch: int, seed: int = 0,
                 device: str = "cpu", resamples: int = 2000) -> ProxyReport:
    """Each score's rank correlations with the mean accuracy, and the combined score of the
    mean distance and the best-ranking network proxy (its row "-mean_distance+NAME")."""
    accuracy = np.array([p.accuracy for p in scored])
    rows: list[ScoreRow] = []
    for kind, names in ((DISTANCE, list(SCORES)), (PROXY, list(PROXIES))):
        for name in names:
            values = np.array([p.scores[name] for p in scored], dtype=float)
            n, rho, tau = rank_correlations(values, accuracy, resamples)
            seconds = float(np.mean([p.seconds[name] for p in scored]))
            rows.append(ScoreRow(name, kind, n, rho, tau, seconds))
    ranked = [r for r in rows
              if r.score in COMBINE_CANDIDATES and math.isfinite(r.spearman.r.value)]
    best = max(ranked, key=lambda r: r.spearman.r.value).score if ranked else None
    if best is not None:
        label = f"{COMBINED_FROM}{best}"
        combined = combined_score(np.array([p.scores["-mean_distance"] for p in scored]),
                                  np.array([p.scores[best] for p in scored], dtype=float), best)
        n, rho, tau = rank_correlations(combined, accuracy, resamples)
        seconds = float(np.mean([p.seconds["-mean_distance"] + p.seconds[best]
                                 for p in scored]))
        rows.append(ScoreRow(label, COMBINED, n, rho, tau, seconds))
        scored = [replace(p, scores={**p.scores, label: float(c)})
                  for p, c in zip(scored, combined)]
    reliability = bench.reliability() if len(bench.cfg.bench.seeds) > 1 else None
    return ProxyReport(bench.cfg.name, batch, seed, device, resamples, best, tuple(rows),
                       tuple(scored), reliability)


def proxies_figure(report: ProxyReport) -> go.Figure:
    """Spearman and Kendall of every score with the mean accuracy, with their 95% CIs and the
    table's noise ceiling (either sign)."""
    rows = [r for r in report.rows if math.isfinite(r.spearman.r.value)][::-1]  # first on top
    fig = go.Figure()
    for method, color in (("spearman", "#1f77b4"), ("kendall", "#ff7f0e")):
        corr = [getattr(r, method).r for r in rows]
        fig.add_trace(go.Bar(
            y=[r.score for r in rows], x=[c.value for c in corr], orientation="h",
            name=method.capitalize(), marker={"color": color},
            error_x={"type": "data", "symmetric": False,
                     "array": [c.high - c.value for c in corr],
                     "arrayminus": [c.value - c.low for c in corr]}))
    if report.reliability is not None and math.isfinite(ceiling := report.reliability.ceiling):
        for x in (-ceiling, ceiling):
            fig.add_vline(x=x, line={"dash": "dash", "color": "#555"},
                          annotation_text=f"noise ceiling {x:+.2f}")
    return fig.update_layout(
        barmode="group", title=f"{report.bench}: zero-cost scores against mean accuracy "
                               f"({len(report.patterns)} patterns; 95% CIs)",
        xaxis_title=f"rank correlation ({SIGN_NOTE})",
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"})


def write_proxies(report: ProxyReport, out: str | Path) -> list[Path]:
    """proxies.json, proxies.md, proxies.html and (where Chromium is installed) proxies.png in
    ``out``."""
    from .report import write_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "proxies.json", out / "proxies.md", out / "proxies.html"]
    paths[0].write_text(json.dumps(report.to_json(), indent=1) + "\n")
    notes = "\n".join(f"- {n}" for n in report.notes())
    paths[1].write_text(f"{report.head()}\n\n{markdown_table(*report.table())}\n\n{notes}\n")
    fig = proxies_figure(report)
    paths[2].write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>skipnas proxies: "
        f"{html.escape(report.bench)}</title><style>body{{font-family:sans-serif;margin:24px}}"
        "table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px}"
        f"</style></head><body><h1>Zero-cost scores on {html.escape(report.bench)}</h1>"
        f"<p>{html.escape(report.head())}</p>{html_table(*report.table())}<ul>" +
        "".join(f"<li>{html.escape(n)}</li>" for n in report.notes()) + "</ul>" +
        fig.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False}) +
        "</body></html>\n")
    try:
        paths.append(write_png(fig, out / "proxies.png", height=120 + 40 * len(report.rows)))
    except UserError as e:  # the HTML holds the same figure
        _log.warning("no proxies.png: %s", e)
    return paths
