"""Correlation code against scipy, and the principle test on studies with planted accuracies."""
import math

import numpy as np
import optuna
import pytest
from scipy import stats

from nas.errors import UserError
from nas.results.analysis import analyze, correlate, correlation_table, kendall, partial
from nas.stats import ols_slope, rankdata, spearman
from search_spaces import make_space


@pytest.mark.parametrize("seed", range(5))
def test_spearman_kendall_match_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = 0.3 * x + rng.normal(size=40)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert np.allclose(rankdata(x), stats.rankdata(x))


def test_partial_correlation_matches_residual_definition():
    """Partial Spearman = Pearson of the residuals of rank(x), rank(y) regressed on rank(z)."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=60)
    x = z + rng.normal(size=60)
    y = z + rng.normal(size=60)
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    res = [v - np.polyval(np.polyfit(rz, v, 1), rz) for v in (rx, ry)]
    assert partial(spearman, x, y, z) == pytest.approx(stats.pearsonr(*res).statistic, abs=1e-9)
    # x and y are related only through z: the partial correlation is much smaller.
    assert abs(partial(spearman, x, y, z)) < spearman(x, y) / 2


def test_bootstrap_ci_and_permutation_p():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    strong = correlate(x, -x + 0.2 * rng.normal(size=50), "spearman", resamples=500)
    r, low, high, p = strong
    assert low <= r <= high < 0 and p < 0.01
    _, low, high, p = correlate(x, rng.normal(size=50), "kendall", resamples=500)
    assert low < 0 < high and p > 0.05


def planted_study(sign: float, n: int = 30, seed: int = 0) -> optuna.Study:
    """A study whose trials' accuracies are planted as a function of the mean distance."""
    space = make_space("free", [10])
    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    from search_spaces import distance_stats

    def objective(trial):
        p = space.suggest(trial)
        s = distance_stats(p)
        for k, v in {"hash": p.hash, "seed": 0, "connections": p.connections, "mbd": s.mbd,
                     "mean_distance": s.mean, "params": 1000 + int(rng.integers(0, 50)),
                     "flops": 1}.items():
            trial.set_user_attr(k, v)
        return 0.8 + sign * 0.1 * s.mean + 0.002 * rng.normal()

    study.optimize(objective, n_trials=n)
    return study


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_analyze_recovers_planted_sign(sign):
    result = analyze(planted_study(sign), resamples=300).principle
    assert result.trials_at_budget == 30
    by = {(c.method, c.against, c.controlled_for): c for c in result.correlations}
    mean_sp = by[("spearman", "mean_distance", "")]
    assert np.sign(mean_sp.r) == sign and abs(mean_sp.r) > 0.8 and mean_sp.p_value < 0.01
    assert np.sign(by[("kendall", "mean_distance", "params")].r) == sign


def test_the_correlation_table_says_which_sign_is_better():
    """r is of accuracy with the distance as named: negative where shorter is better."""
    headers, rows = correlation_table(analyze(planted_study(-1.0), resamples=50).principle)
    assert headers[3] == "r (< 0: shorter is better)"
    assert {row[0] for row in rows} == {"mbd", "mean_distance"}
    assert all(float(row[3]) < 0 for row in rows if row[2] == "-")


def test_analyze_needs_enough_trials():
    with pytest.raises(UserError, match="at least 4"):
        analyze(planted_study(-1.0, n=3), resamples=10)


def test_ols_slope_and_its_interval_match_scipy():
    from scipy.stats import linregress, t

    rng = np.random.default_rng(3)
    x = rng.uniform(1.5, 3.0, 40)
    y = 0.8 - 0.03 * x + rng.normal(0, 0.01, 40)
    fit, ref = ols_slope(x, y), linregress(x, y)
    half = t.ppf(0.975, 38) * ref.stderr
    assert fit.slope == pytest.approx(ref.slope)
    assert (fit.ci_low, fit.ci_high) == pytest.approx((ref.slope - half, ref.slope + half))
    assert math.isnan(ols_slope([1.0, 1.0, 1.0], [0.1, 0.2, 0.3]).slope)


def test_the_verdict_never_says_an_unshown_relation_survives():
    from nas.results.analysis import Correlation, PrincipleTest, verdict
    from nas.search.evidence import Evidence, Noise

    def corr(control, r, lo, hi, p):
        return Correlation("spearman", "mean_distance", control, r, lo, hi, p, 20)

    principle = PrincipleTest("s", "per_block", (12,), 41, 20, 20, 100,
                              (corr("", -0.2, -0.6, 0.2, 0.3),
                               corr("params", -0.5, -0.8, -0.1, 0.01)), (), (0.6, 0.7))
    ev = Evidence(Noise(math.nan, 0, 0, math.nan), None, (), None, 0, False)
    lines = verdict(principle, ev, "2 epochs", "fashion-mnist")
    assert lines[0].startswith("Not shown") and not any("survives" in x for x in lines)
    assert any("partial Spearman r = -0.500" in x for x in lines)
