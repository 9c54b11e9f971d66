"""The statistics of seed agreement, attenuation and least squares (nas.stats) against scipy
and closed forms."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from nas.stats import (
    Regression,
    attenuation_cap,
    disattenuate,
    mean_pair_correlation,
    ols,
    spearman_brown,
    spearman_matrix,
)


@pytest.mark.parametrize("seed", range(4))
def test_the_spearman_matrix_is_scipys(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(12, 4))
    a[3, 1] = a[5, 1]  # a tie
    assert spearman_matrix(a) == pytest.approx(stats.spearmanr(a).statistic)


def test_a_constant_column_has_no_spearman():
    a = np.column_stack([np.arange(5.0), np.ones(5), np.arange(5.0)[::-1]])
    m = spearman_matrix(a)
    assert m[0, 2] == pytest.approx(-1) and np.isnan(m[0, 1]) and np.isnan(m[1, 1])


def test_the_mean_pair_correlation_is_the_mean_over_every_pair_of_columns():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 5)) + np.linspace(0, 2, 10)[:, None]
    pairs = [stats.spearmanr(a[:, i], a[:, j]).statistic
             for i, j in itertools.combinations(range(5), 2)]
    assert mean_pair_correlation(spearman_matrix(a)) == pytest.approx(np.mean(pairs))
    assert math.isnan(mean_pair_correlation(spearman_matrix(a[:, :1])))  # one seed: no pair


@pytest.mark.parametrize("counts", [[2, 1, 0, 0], [1, 1, 1, 1], [0, 3, 1, 0], [1, 0, 2, 1]])
def test_with_counts_the_pairs_are_those_of_the_drawn_sample_but_self_pairs(counts):
    """The sample that draws column i counts[i] times: every pair of its draws that are not
    the same column, each such pair once."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(9, 4))
    drawn = [i for i, c in enumerate(counts) for _ in range(c)]
    pairs = [stats.spearmanr(a[:, i], a[:, j]).statistic
             for i, j in itertools.combinations(drawn, 2) if i != j]
    assert mean_pair_correlation(spearman_matrix(a), np.array(counts)) == \
        pytest.approx(np.mean(pairs))


def test_one_column_drawn_again_and_again_has_no_pair():
    corr = spearman_matrix(np.random.default_rng(2).normal(size=(6, 3)))
    assert math.isnan(mean_pair_correlation(corr, np.array([0, 3, 0])))


def test_the_attenuation_cap_and_the_disattenuated_correlation_in_closed_form():
    assert attenuation_cap(0.64, 0.81) == pytest.approx(0.72)
    assert disattenuate(0.36, 0.64, 0.81) == pytest.approx(0.5)
    assert disattenuate(0.8, 0.64, 0.81) == pytest.approx(0.8 / 0.72)  # above 1: noise
    # Spearman-Brown of the mean over k seeds feeds the cap: r = 0.37, k = 3 and 4
    rel3, rel4 = spearman_brown(0.37, 3), spearman_brown(0.37, 4)
    assert (rel3, rel4) == pytest.approx((1.11 / 1.74, 1.48 / 2.11))
    assert attenuation_cap(rel3, rel4) == pytest.approx(math.sqrt(1.11 / 1.74 * 1.48 / 2.11))
    for bad in (0.0, -0.2, math.nan):
        assert math.isnan(attenuation_cap(bad, 0.8)) and math.isnan(attenuation_cap(0.8, bad))
        assert math.isnan(disattenuate(0.5, bad, 0.8))


def _closed_form(x, y):
    """Estimates, standard errors and degrees of freedom of least squares with an intercept:
    numpy's lstsq, and s^2 (X'X)^-1 written out."""
    design = np.column_stack([np.ones(len(y)), x])
    beta = np.linalg.lstsq(design, y, rcond=None)[0]
    resid = y - design @ beta
    df = len(y) - design.shape[1]
    se = np.sqrt(np.diag(np.linalg.inv(design.T @ design)) * (resid @ resid) / df)
    return beta, se, df


@pytest.mark.parametrize("seed", range(3))
def test_ols_is_lstsq_with_the_closed_form_standard_errors(seed):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(1.5, 3, 30), rng.integers(3, 9, 30), rng.normal(size=30)])
    y = 0.8 - 0.02 * x[:, 0] + 0.01 * x[:, 1] + rng.normal(0, 0.01, 30)
    fit = ols(x, y, ["a", "b", "c"])
    beta, se, df = _closed_form(x, y)
    assert [c.name for c in fit.coefficients] == ["intercept", "a", "b", "c"]
    assert (fit.n, fit.df, fit.dropped) == (30, 26, ())
    assert [c.estimate.value for c in fit.coefficients] == pytest.approx(beta, rel=1e-9)
    assert [c.se for c in fit.coefficients] == pytest.approx(se, rel=1e-9)
    half = stats.t.ppf(0.975, df) * se
    assert [c.estimate.low for c in fit.coefficients] == pytest.approx(beta - half, rel=1e-9)
    assert [c.estimate.high for c in fit.coefficients] == pytest.approx(beta + half, rel=1e-9)
    assert [c.p_value for c in fit.coefficients] == pytest.approx(
        2 * stats.t.sf(np.abs(beta / se), df), rel=1e-9)
    resid = y - np.column_stack([np.ones(30), x]) @ beta
    assert fit.r_squared == pytest.approx(1 - resid @ resid / ((y - y.mean()) ** 2).sum())


def test_ols_on_one_predictor_is_scipys_linregress():
    rng = np.random.default_rng(7)
    x = rng.uniform(1.5, 3.0, 25)
    y = 0.8 - 0.03 * x + rng.normal(0, 0.01, 25)
    fit, ref = ols(x[:, None], y, ["x"]), stats.linregress(x, y)
    intercept, slope = fit.coefficients
    assert (slope.estimate.value, intercept.estimate.value) == pytest.approx(
        (ref.slope, ref.intercept), rel=1e-9)
    assert (slope.se, intercept.se) == pytest.approx((ref.stderr, ref.intercept_stderr),
                                                     rel=1e-9)
    assert slope.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert fit.r_squared == pytest.approx(ref.rvalue ** 2)


def test_an_exactly_collinear_predictor_is_dropped_not_fitted():
    """Parameters as an exact linear function of another predictor (as in the offsets spaces,
    of the reads of the block input), on a scale a million times larger: dropped, and the fit
    is that without it. A constant predictor is collinear with the intercept."""
    rng = np.random.default_rng(1)
    distance = rng.uniform(1.5, 3, 40)
    reads = rng.integers(3, 9, 40).astype(float)
    params = 120_000 + 3_456 * reads
    y = 0.8 - 0.02 * distance + 0.01 * reads + rng.normal(0, 0.01, 40)
    x = np.column_stack([distance, reads, params, np.full(40, 2.0)])
    fit = ols(x, y, ["distance", "reads", "params", "constant"])
    assert fit.dropped == ("params", "constant")
    assert [c.name for c in fit.coefficients] == ["intercept", "distance", "reads"]
    alone = ols(x[:, :2], y, ["distance", "reads"])
    assert fit.coefficients == alone.coefficients and fit.df == alone.df == 37
    # Nearly but not exactly collinear: kept (its wide interval says the rest).
    x[:, 2] += rng.integers(0, 50, 40)
    assert ols(x[:, :3], y, ["distance", "reads", "params"]).dropped == ()
    # Listed first, params is kept and reads (now its linear function) dropped instead.
    x[:, 2] = params
    assert ols(x[:, [2, 1, 0]], y, ["params", "reads", "distance"]).dropped == ("reads",)


def test_ols_without_residual_degrees_of_freedom_gives_no_interval():
    x = np.array([[1.0, 4.0], [2.0, 3.0], [4.0, 7.0]])
    fit = ols(x, np.array([0.5, 0.6, 0.8]), ["a", "b"])
    assert fit.df == 0 and fit.dropped == ()
    beta = np.linalg.solve(np.column_stack([np.ones(3), x]), [0.5, 0.6, 0.8])
    assert [c.estimate.value for c in fit.coefficients] == pytest.approx(beta)
    assert all(math.isnan(v) for c in fit.coefficients
               for v in (c.estimate.low, c.estimate.high, c.se, c.p_value))
    # Two rows cannot separate two predictors: the second is dropped, none is made up.
    two = ols(x[:2], np.array([0.5, 0.6]), ["a", "b"])
    assert (two.dropped, two.df) == (("b",), 0)
    with pytest.raises(ValueError, match="intercept"):
        ols(x, np.zeros(3), ["intercept", "b"])


def test_a_regression_survives_json():
    import json

    rng = np.random.default_rng(2)
    x = np.column_stack([rng.normal(size=10), np.ones(10)])
    fit = ols(x, rng.normal(size=10), ["a", "flat"])
    back = Regression.from_json(json.loads(json.dumps(fit.to_json())))
    assert back == fit and back.dropped == ("flat",)
    assert back.coefficient("a") == fit.coefficients[1]
    assert back.coefficient("flat") is None
