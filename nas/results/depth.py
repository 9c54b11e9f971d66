"""The principle across depths: one study per depth L (one block at log's count), read back from
their principle tests (:func:`~nas.results.analysis.analyze`). Per depth, the rank correlation of
accuracy with backprop distance and log's lead over nearest; across depths, whether that lead
grows."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import UserError
from ..stats import Estimate, RankCorrelation
from .analysis import DISTANCE_SIGN, PrincipleTest, Table

GAP = ("log", "nearest")  # the lead the paper predicts to widen with depth: log minus nearest


def _accuracies(result: PrincipleTest, template: str) -> np.ndarray:
    """Per-seed accuracies of ``template`` at the study budget, in the study's style, with the
    block output its rule gives."""
    for t in result.templates:
        if (t.template, t.style, t.budget_mode, t.block_output) == (
                template, result.style, "exact", "template") \
                and t.connections == result.budget:
            if t.accuracies is None:
                raise UserError(f"study {result.study!r}: its analysis predates per-seed "
                                f"accuracies; analyze the study again")
            return np.array(t.accuracies, dtype=float)
    raise UserError(f"study {result.study!r}: no {template} runs at its budget of "
                    f"{result.budget} connections")


@dataclass(frozen=True)
class DepthRow:
    """One depth: Spearman of accuracy with mean distance and with MBD, and log's and
    nearest's mean accuracies (:data:`GAP`) with the gap between them."""
    study: str
    layers: int
    budget: int
    n: int                          # trials correlated
    spearman_mean_distance: RankCorrelation
    spearman_mbd: RankCorrelation
    lead: float                     # GAP[0]'s mean accuracy over seeds
    base: float                     # GAP[1]'s
    gap: float
    gap_se: float                   # over seeds (NaN: one seed)

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "layers": self.layers, "budget": self.budget, "n": self.n,
                "spearman_mean_distance": self.spearman_mean_distance.to_json(),
                "spearman_mbd": self.spearman_mbd.to_json(),
                GAP[0]: self.lead, GAP[1]: self.base, "gap": self.gap, "gap_se": self.gap_se}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DepthRow":
        return cls(data["study"], data["layers"], data["budget"], data["n"],
                   RankCorrelation.from_json(data["spearman_mean_distance"]),
                   RankCorrelation.from_json(data["spearman_mbd"]), data[GAP[0]],
                   data[GAP[1]], data["gap"], data["gap_se"])


@dataclass(frozen=True)
class DepthSummary:
    """The principle across depths (:func:`depth_summary`): what ``depth.json`` holds."""
    gap: str                        # "log - nearest"
    depths: tuple[DepthRow, ...]    # by depth
    gap_slope: Estimate             # per doubling of L, with its 95% bootstrap interval
    resamples: int

    def to_json(self) -> dict[str, Any]:
        return {"gap": self.gap, "depths": [d.to_json() for d in self.depths],
                "gap_slope_per_doubling": self.gap_slope.value,
                "gap_slope_ci": [self.gap_slope.low, self.gap_slope.high],
                "resamples": self.resamples}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DepthSummary":
        low, high = data["gap_slope_ci"]
        return cls(data["gap"], tuple(DepthRow.from_json(d) for d in data["depths"]),
                   Estimate(data["gap_slope_per_doubling"], low, high), data["resamples"])


def _slope(depths: np.ndarray, gaps: np.ndarray) -> float:
    """Least-squares change of the gap per doubling of L."""
    return float(np.polyfit(np.log2(depths), gaps, 1)[0])


def depth_summary(results: Sequence[PrincipleTest], resamples: int = 2000,
                  seed: int = 0) -> DepthSummary:
    """Per depth: Spearman of accuracy with mean distance and with MBD (their CIs), and the
    accuracy gap log - nearest (its standard error over seeds). Across depths: the gap's
    least-squares slope per doubling of L, with a 95% bootstrap CI over each template's seeds."""
    if len(results) < 2:
        raise UserError("a depth summary needs studies at two depths or more")
    by_depth: list[tuple[int, PrincipleTest]] = []
    for r in results:
        if not r.layers or len(r.layers) != 1:
            shown = None if r.layers is None else list(r.layers)
            raise UserError(f"study {r.study!r}: a depth summary needs one-block studies, "
                            f"this one has layers {shown}")
        by_depth.append((r.layers[0], r))
    by_depth.sort(key=lambda pair: pair[0])
    depths = np.array([layers for layers, _ in by_depth], dtype=float)
    if len(set(depths)) != len(depths):
        raise UserError(f"two studies at the same depth: {[int(d) for d in depths]}")
    runs = [[_accuracies(r, name) for name in GAP] for _, r in by_depth]
    rows = []
    for (layers, r), (lead, base) in zip(by_depth, runs):
        se = np.sqrt(lead.var(ddof=1) / len(lead) + base.var(ddof=1) / len(base)) \
            if min(len(lead), len(base)) > 1 else float("nan")
        rows.append(DepthRow(r.study, layers, r.budget, r.trials_at_budget,
                             r.correlation("mean_distance").rank, r.correlation("mbd").rank,
                             float(lead.mean()), float(base.mean()),
                             float(lead.mean() - base.mean()), float(se)))
    gaps = np.array([row.gap for row in rows])
    rng = np.random.default_rng(seed)
    boots = [_slope(depths, np.array([rng.choice(a, len(a)).mean() - rng.choice(b, len(b)).mean()
                                      for a, b in runs]))
             for _ in range(resamples)]
    low, high = np.percentile(boots, [2.5, 97.5])
    return DepthSummary(f"{GAP[0]} - {GAP[1]}", tuple(rows),
                        Estimate(_slope(depths, gaps), float(low), float(high)), resamples)


def depth_table(summary: DepthSummary) -> Table:
    """The per-depth rows of a :func:`depth_summary`, formatted once."""
    def corr(c: RankCorrelation) -> str:
        return f"{c.r.value:+.3f} {c.r.interval('+.3f')}"

    headers = ["L", "budget", "n", f"Spearman: mean distance [95% CI] ({DISTANCE_SIGN})",
               f"Spearman: MBD [95% CI] ({DISTANCE_SIGN})",
               GAP[0], GAP[1], f"{summary.gap} (± SE)"]
    rows = [[str(d.layers), str(d.budget), str(d.n), corr(d.spearman_mean_distance),
             corr(d.spearman_mbd), f"{d.lead:.4f}", f"{d.base:.4f}",
             f"{d.gap:+.4f} ± {d.gap_se:.4f}"] for d in summary.depths]
    return headers, rows


def depth_figure(summary: DepthSummary) -> go.Figure:
    """Left: the gap log - nearest against L (± one SE). Right: Spearman of accuracy with mean
    distance and with MBD against L (95% CIs)."""
    rows = summary.depths
    depths = [d.layers for d in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"accuracy gap {summary.gap} (± 1 SE)", "Spearman of accuracy with distance (95% CI)"))
    fig.add_trace(go.Scatter(x=depths, y=[d.gap for d in rows], mode="lines+markers",
                             name=summary.gap,
                             error_y={"type": "data", "array": [d.gap_se for d in rows]}),
                  row=1, col=1)
    for corr, name in (([d.spearman_mean_distance.r for d in rows], "mean distance"),
                       ([d.spearman_mbd.r for d in rows], "MBD")):
        fig.add_trace(go.Scatter(
            x=depths, y=[c.value for c in corr], mode="lines+markers",
            name=f"Spearman vs {name}",
            error_y={"type": "data", "symmetric": False,
                     "array": [c.high - c.value for c in corr],
                     "arrayminus": [c.value - c.low for c in corr]}),
            row=1, col=2)
    for col in (1, 2):
        fig.add_hline(y=0, line={"color": "#888", "dash": "dot"}, row=1, col=col)
        fig.update_xaxes(type="log", tickvals=depths, title_text="layers L (log scale)",
                         row=1, col=col)
    slope = summary.gap_slope
    fig.update_layout(title=f"The principle at depth: the gap changes {slope.value:+.4f} per "
                            f"doubling of L, 95% CI {slope.interval('+.4f')}")
    return fig
