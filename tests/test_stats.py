"""The statistics of seed agreement and attenuation (nas.stats) against scipy and closed forms."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from nas.stats import (
    attenuation_cap,
    disattenuate,
    mean_pair_correlation,
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
