"""The summary across depths: closed forms on made-up principle tests, and its refusals."""
import json
from dataclasses import replace

import numpy as np
import pytest

from nas.errors import UserError
from nas.results.analysis import Correlation, PrincipleTest, TemplateSummary
from nas.results.depth import DepthSummary, depth_figure, depth_summary, depth_table
from nas.stats import Estimate, RankCorrelation


def template(name, accs, connections, **over):
    return replace(TemplateSummary(
        template=name, style="per_block", budget_mode="exact", block_output="template",
        seeds=len(accs), accuracies=tuple(accs), accuracy_mean=float(np.mean(accs)),
        accuracy_std=0.0, connections=connections, mbd=1, mean_distance=1.0, params=100), **over)


def result(L, log, nearest, r=-0.5, extra=()):
    corr = tuple(Correlation(m, a, c, RankCorrelation(Estimate(r, r - 0.1, r + 0.1), 0.01), 30)
                 for m in ("spearman", "kendall") for a in ("mbd", "mean_distance")
                 for c in ("", "params"))
    return PrincipleTest(study=f"d{L}", style="per_block", layers=(L,), budget=10 * L,
                         trials_at_budget=30, trials_total=40, resamples=20, correlations=corr,
                         templates=(template("log", log, 10 * L),
                                    template("nearest", nearest, 10 * L), *extra),
                         accuracy_range=(0.0, 1.0))


def test_gap_and_its_standard_error_are_the_closed_forms():
    s = depth_summary([result(16, [0.8, 0.9], [0.7, 0.7, 0.8]), result(8, [0.5], [0.5])],
                      resamples=50)
    assert [d.layers for d in s.depths] == [8, 16]  # sorted by depth
    d = s.depths[1]
    assert d.gap == pytest.approx(0.85 - 0.7333333, abs=1e-6)
    assert d.gap_se == pytest.approx(np.sqrt(0.005 / 2 + 0.0033333 / 3), abs=1e-6)
    assert np.isnan(s.depths[0].gap_se)  # one seed: no spread to measure
    again = DepthSummary.from_json(json.loads(json.dumps(s.to_json())))
    assert json.dumps(again.to_json()) == json.dumps(s.to_json())  # NaN SE and all


def test_slope_per_doubling_and_a_ci_that_collapses_without_seed_noise():
    # gap = 0.01 * log2(L) exactly, every seed alike: the bootstrap cannot move it.
    results = [result(L, [0.7 + 0.01 * np.log2(L)] * 3, [0.7] * 3) for L in (8, 16, 32, 64)]
    s = depth_summary(results, resamples=200)
    assert s.gap_slope.value == pytest.approx(0.01)
    assert (s.gap_slope.low, s.gap_slope.high) == pytest.approx((0.01, 0.01))
    noisy = depth_summary([result(L, [0.7, 0.72, 0.74], [0.7, 0.71, 0.69]) for L in (8, 32)],
                          resamples=500, seed=1)
    slope = noisy.gap_slope
    assert slope.low < slope.value < slope.high  # no trend, but seed noise: a band


def test_table_and_figure_carry_every_depth():
    s = depth_summary([result(L, [0.8, 0.81], [0.7, 0.72], r=-0.3) for L in (8, 16, 32)],
                      resamples=20)
    headers, rows = depth_table(s)
    assert [row[0] for row in rows] == ["8", "16", "32"] and len(headers) == len(rows[0])
    assert headers[3:5] == ["Spearman: mean distance [95% CI] (< 0: shorter is better)",
                            "Spearman: MBD [95% CI] (< 0: shorter is better)"]
    assert rows[0][3] == "-0.300 [-0.400, -0.200]" and rows[0][-1] == "+0.0950 ± 0.0112"
    fig = depth_figure(s)
    assert [list(t.x) for t in fig.data] == [[8, 16, 32]] * 3


def test_the_gap_uses_the_exact_budget_runs_only():
    # nearest at the authors' count, or with every node feeding the output, is not the gap's.
    other = (template("nearest", [0.1], 99, budget_mode="authors"),
             template("nearest", [0.2], 90, block_output="all"))
    base = result(8, [0.8], [0.7])
    base = replace(base, templates=other + base.templates)
    s = depth_summary([base, result(16, [0.8], [0.7])], resamples=10)
    assert s.depths[0].base == pytest.approx(0.7)


@pytest.mark.parametrize("results, message", [
    ([result(8, [0.8], [0.7])], "two depths or more"),
    ([result(8, [0.8], [0.7]), result(8, [0.8], [0.7])], "same depth"),
    ([result(8, [0.8], [0.7]), replace(result(16, [0.8], [0.7]), layers=(8, 8))],
     r"one-block studies, this one has layers \[8, 8\]"),
    ([result(8, [0.8], [0.7]), replace(result(16, [0.8], [0.7]), templates=())],
     "no log runs at its budget"),
    ([result(8, [0.8], [0.7]), replace(result(16, [0.8], [0.7]), templates=tuple(
        replace(t, accuracies=None) for t in result(16, [0.8], [0.7]).templates))],
     "predates per-seed accuracies"),
])
def test_refusals(results, message):
    with pytest.raises(UserError, match=message):
        depth_summary(results)
