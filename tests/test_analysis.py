"""Correlation code against scipy, and the principle test on studies with planted accuracies."""
import math

import numpy as np
import optuna
import pytest
from scipy import stats

from nas import stats as skstats
from nas.errors import UserError
from nas.results.analysis import analyze, correlation_table, verdict
from nas.stats import (
    Estimate,
    RankCorrelation,
    correlate,
    kendall,
    ols_slope,
    partial_r,
    rankdata,
    spearman,
)
from search_spaces import distance_stats, make_space, reads_of_input


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
    r = float(partial_r(spearman(x, y), spearman(x, z), spearman(y, z)))
    assert r == pytest.approx(stats.pearsonr(*res).statistic, abs=1e-9)
    # x and y are related only through z: the partial correlation is much smaller.
    assert abs(r) < spearman(x, y) / 2


def _loop_correlate(x, y, method, z=None, resamples=2000, seed=0):
    """The one-resample-at-a-time version the vectorised correlate replaced."""
    base = {"spearman": spearman, "kendall": kendall}[method]

    def stat(a, b, c):
        if z is None:
            return base(a, b)
        return float(partial_r(base(a, b), base(a, c), base(b, c)))
    zz = z if z is not None else np.zeros_like(x)
    r = stat(x, y, zz)
    rng = np.random.default_rng(seed)
    n = len(x)
    boots = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        v = stat(x[idx], y[idx], zz[idx])
        if np.isfinite(v):
            boots.append(v)
    low, high = np.percentile(boots, [2.5, 97.5])
    extreme = sum(abs(stat(x, rng.permutation(y), zz)) >= abs(r) - 1e-12
                  for _ in range(resamples))
    return r, float(low), float(high), (extreme + 1) / (resamples + 1)


def flat(c):
    """(r, CI low, CI high, p) of a correlate result."""
    return c.r.value, c.r.low, c.r.high, c.p_value


@pytest.mark.parametrize("method", ["spearman", "kendall"])
@pytest.mark.parametrize("controlled", [False, True])
def test_vectorised_correlate_equals_the_loop(method, controlled):
    """All resamples at once give exactly the loop's draws and statistics (ties included, and
    a tiny sample where some bootstrap draws are constant and give NaN)."""
    for n, seed in ((30, 0), (5, 1)):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 5, n).astype(float)
        y = -0.4 * x + rng.normal(size=n)
        z = x + rng.integers(0, 3, n) if controlled else None
        got = flat(correlate(x, y, method, z, resamples=300, seed=7))
        want = _loop_correlate(x, y, method, z, resamples=300, seed=7)
        assert got == pytest.approx(want, abs=1e-12, nan_ok=True)


def test_shuffled_kendall_counts_pairs_like_the_definition():
    """Kendall of u with each shuffle of v, counted in u's order, equals tau-b by its pairs
    (ties in both)."""
    rng = np.random.default_rng(2)
    u, v = rng.integers(0, 4, 12).astype(float), rng.integers(0, 5, 12).astype(float)
    perm = np.array([rng.permutation(12) for _ in range(40)])
    assert skstats._kendall_shuffled(u, v, perm) == pytest.approx(
        [stats.kendalltau(u, v[p]).statistic for p in perm], abs=1e-12)


@pytest.mark.parametrize("method", ["spearman", "kendall"])
def test_asymptotic_intervals_above_the_limit_agree_with_resampling(method, monkeypatch):
    """Above RESAMPLE_LIMIT the Fisher-z interval and the approximate p stand in for the
    bootstrap and the permutation test; on 300 pairs they agree closely."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=300)
    y = -0.25 * x + rng.normal(size=300)
    z = x + rng.normal(size=300)
    tied = rng.integers(0, 3, 300).astype(float)   # a few values, as MBD at one budget
    for xx, yy, zz in ((x, y, None), (x, y, z), (x, rng.normal(size=300), None),
                       (tied, -0.1 * tied + rng.normal(size=300), None)):
        r, low, high, p = flat(correlate(xx, yy, method, zz, resamples=1000))
        monkeypatch.setattr(skstats, "RESAMPLE_LIMIT", 100)
        ra, lowa, higha, pa = flat(correlate(xx, yy, method, zz))
        monkeypatch.undo()
        assert ra == pytest.approx(r, abs=1e-12)
        assert lowa == pytest.approx(low, abs=0.025) and higha == pytest.approx(high, abs=0.025)
        assert pa == pytest.approx(p, abs=0.02)


def test_kendall_on_large_samples_is_scipy_tau_b():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 30, 2500).astype(float)
    y = x + rng.normal(size=2500) * 10
    assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert kendall(x[:300], y[:300]) == pytest.approx(
        stats.kendalltau(x[:300], y[:300]).statistic, abs=1e-12)


def test_bootstrap_ci_and_permutation_p():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    strong = correlate(x, -x + 0.2 * rng.normal(size=50), "spearman", resamples=500)
    r, low, high, p = flat(strong)
    assert low <= r <= high < 0 and p < 0.01
    _, low, high, p = flat(correlate(x, rng.normal(size=50), "kendall", resamples=500))
    assert low < 0 < high and p > 0.05


def planted_study(sign: float, n: int = 30, seed: int = 0,
                  without_params: int = 0) -> optuna.Study:
    """A study whose trials' accuracies are planted as a function of the mean distance (its
    first ``without_params`` trials record no parameter count, as older records)."""
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
            if not (k == "params" and trial.number < without_params):
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
    r = mean_sp.rank.r.value
    assert np.sign(r) == sign and abs(r) > 0.8 and mean_sp.rank.p_value < 0.01
    assert np.sign(by[("kendall", "mean_distance", "params")].rank.r.value) == sign


def test_the_correlation_table_says_which_sign_is_better():
    """r is of accuracy with the distance as named: negative where shorter is better."""
    headers, rows = correlation_table(analyze(planted_study(-1.0), resamples=50).principle)
    assert headers[3] == "r (< 0: shorter is better)"
    assert {row[0] for row in rows} == {"mbd", "mean_distance"}
    assert all(float(row[3]) < 0 for row in rows if row[2] == "-")
    assert headers[4:6] == ["95% CI", "p (permutation)"]


def test_trials_without_a_parameter_count_are_left_out_of_the_controlled_correlation():
    study = planted_study(-1.0, without_params=5)
    principle = analyze(study, resamples=200).principle
    plain = principle.correlation(controlled_for="")
    controlled = principle.correlation(controlled_for="params")
    assert (plain.n, controlled.n) == (30, 25)
    r = controlled.rank.r
    assert r.low < r.value < r.high < 0


def test_a_large_study_says_its_intervals_are_asymptotic(monkeypatch):
    monkeypatch.setattr(skstats, "RESAMPLE_LIMIT", 10)
    principle = analyze(planted_study(-1.0), resamples=50).principle
    headers, rows = correlation_table(principle)
    assert headers[4:6] == ["95% CI (Fisher z)", "p (asymptotic)"]
    c = principle.correlation()
    assert c.rank.r.low < c.rank.r.value < c.rank.r.high < 0 and c.rank.p_value < 0.01


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
    assert fit.slope.value == pytest.approx(ref.slope)
    assert (fit.slope.low, fit.slope.high) == pytest.approx((ref.slope - half, ref.slope + half))
    assert math.isnan(ols_slope([1.0, 1.0, 1.0], [0.1, 0.2, 0.3]).slope.value)


def test_the_verdict_never_says_an_unshown_relation_survives():
    from nas.results.analysis import Correlation, PrincipleTest, verdict
    from nas.search.experiment.evidence import Evidence, Noise

    def corr(control, r, lo, hi, p):
        return Correlation("spearman", "mean_distance", control,
                           RankCorrelation(Estimate(r, lo, hi), p), 20)

    principle = PrincipleTest("s", "per_block", (12,), 41, 20, 20, 100,
                              (corr("", -0.2, -0.6, 0.2, 0.3),
                               corr("params", -0.5, -0.8, -0.1, 0.01)), (), (0.6, 0.7))
    ev = Evidence(Noise(math.nan, 0, 0, math.nan), None, (), None, 0, False)
    lines = verdict(principle, ev, "2 epochs", "fashion-mnist")
    assert lines[0].startswith("Not shown") and not any("survives" in x for x in lines)
    assert any("partial Spearman r = -0.500" in x for x in lines)


def test_detection_power_is_fishers_z_by_hand():
    """Issue 40: with 20 patterns a correlation of the published size is hard to see, and the
    verdict now says how hard. r = 0.5, n = 30: z = atanh(0.5) sqrt(27) = 2.854; the power is
    Phi(2.854 - 1.960) + Phi(-1.960 - 2.854) = 0.8144."""
    from nas.results.analysis import detection_power

    assert detection_power(0.5, 30) == pytest.approx(0.8144, abs=1e-4)
    assert detection_power(-0.5, 30) == detection_power(0.5, 30)
    assert detection_power(0.5, 3) == 0.0


def test_the_published_correlation_the_verdict_quotes_is_the_published_studys():
    import json
    from pathlib import Path

    from nas.results.analysis import PUBLISHED_AT, PUBLISHED_R

    folder = Path(__file__).resolve().parents[1] / "studies" / "results" / \
        "principle_fashion_mnist"
    data = json.loads((folder / "analyze.json").read_text())
    (r,) = [c["r"] for c in data["correlations"] if c["against"] == "mean_distance"
            and c["method"] == "spearman" and not c["controlled_for"]]
    assert round(r, 2) == PUBLISHED_R
    assert f"{data['trials_at_budget']} patterns, studies/results/{folder.name}" == PUBLISHED_AT


def offsets_study(accuracy, seed=0, without_params=0, without_pattern=0) -> optuna.Study:
    """Every offsets pattern of 12 layers (one budget, 46 patterns), its accuracy planted as
    ``accuracy(mean distance, reads of the block input)`` plus a little noise and its parameter
    count an exact linear function of its reads, as in the offsets spaces. The first
    ``without_params`` trials record no parameter count, the next ``without_pattern`` no spec
    (older records)."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction="maximize")
    for i, p in enumerate(make_space("offsets", [12]).all_patterns()):
        s, reads = distance_stats(p), reads_of_input(p)
        attrs = {"spec": {"format_version": 1, **p.to_dict()}, "hash": p.hash, "seed": 0,
                 "connections": p.connections, "mbd": s.mbd, "mean_distance": s.mean,
                 "params": 20_000 + 1_234 * reads, "flops": 1}
        if i < without_params:
            del attrs["params"]
        elif i < without_params + without_pattern:
            del attrs["spec"]
        study.add_trial(optuna.trial.create_trial(
            value=accuracy(s.mean, reads) + 0.002 * rng.normal(), user_attrs=attrs))
    return study


def _verdict(principle):
    from nas.search.experiment.evidence import Evidence, Noise

    ev = Evidence(Noise(math.nan, 0, 0, math.nan), None, (), None, 0, False)
    return " ".join(verdict(principle, ev, "2 epochs", "fashion-mnist"))


def test_the_regression_is_least_squares_over_the_trials_at_the_budget():
    """Issue 38 item 5: accuracy on mean distance and the reads of the block input (numpy's
    lstsq on the stored trials); the parameter count, a linear function of the reads, is
    dropped, not fitted into nonsense."""
    study = offsets_study(lambda d, r: 0.8 - 0.02 * d + 0.01 * r)
    reg = analyze(study, resamples=20).principle.regression
    patterns = make_space("offsets", [12]).all_patterns()
    design = np.array([[1, distance_stats(p).mean, reads_of_input(p)] for p in patterns])
    acc = np.array([t.values[0] for t in study.trials])
    beta = np.linalg.lstsq(design, acc, rcond=None)[0]
    assert [c.name for c in reg.coefficients] == ["intercept", "mean_distance", "reads_of_input"]
    assert [c.estimate.value for c in reg.coefficients] == pytest.approx(beta, rel=1e-9)
    assert (reg.n, reg.df, reg.dropped) == (46, 43, ("params",))


def test_with_accuracy_following_the_reads_distance_has_no_effect_once_they_are_held_equal():
    """The confound of the issue: mean distance goes with the reads of the block input
    (Spearman +0.6 here), so accuracy that follows only the reads also ranks with distance;
    held equal in the regression, distance's interval covers 0 and the reads carry the
    effect."""
    principle = analyze(offsets_study(lambda d, r: 0.8 + 0.01 * r), resamples=200).principle
    assert principle.correlation().rank.r.low > 0   # the raw correlation is misleading
    reg = principle.regression
    distance, reads = reg.coefficient("mean_distance"), reg.coefficient("reads_of_input")
    assert distance.estimate.low < 0 < distance.estimate.high and distance.p_value > 0.05
    assert reads.estimate.low > 0 and reads.p_value < 0.05
    text = _verdict(principle)
    assert (f"Holding the reads of the block input equal in a least-squares regression "
            f"(46 trials), mean distance went with {distance.estimate.value:+.4f} accuracy per "
            f"unit (95% CI {distance.estimate.interval('+.4f')}, p = {distance.p_value:.4f}): "
            f"no detectable effect of backprop distance when those are held equal.") in text
    assert (f"went with {reads.estimate.value:+.4f} accuracy per node that reads it (95% CI "
            f"{reads.estimate.interval('+.4f')}, p = {reads.p_value:.4f}): they carry an effect "
            f"of their own.") in text
    assert "The parameter count was left out of the regression" in text
    assert "helps" not in text and "hurts" not in text


def test_with_accuracy_following_distance_shorter_helps_with_the_reads_held_equal():
    principle = analyze(offsets_study(lambda d, r: 0.9 - 0.05 * d), resamples=200).principle
    reg = principle.regression
    distance, reads = reg.coefficient("mean_distance"), reg.coefficient("reads_of_input")
    assert distance.estimate.high < 0 and distance.p_value < 0.05
    assert distance.estimate.low < -0.05 < distance.estimate.high
    assert reads.estimate.low < 0 < reads.estimate.high
    text = _verdict(principle)
    assert (f"mean distance went with {distance.estimate.value:+.4f} accuracy per unit (95% CI "
            f"{distance.estimate.interval('+.4f')}, p = {distance.p_value:.4f}): shorter "
            f"backprop distance helps when those are held equal.") in text
    assert "no detectable effect of their own" in text
    longer = analyze(offsets_study(lambda d, r: 0.7 + 0.05 * d), resamples=20).principle
    assert "shorter backprop distance hurts when those are held equal" in _verdict(longer)


def test_the_regression_leaves_out_trials_without_params_or_a_pattern():
    study = offsets_study(lambda d, r: 0.9 - 0.05 * d, without_params=3, without_pattern=4)
    principle = analyze(study, resamples=20).principle
    assert principle.regression.n == 39 and principle.trials_at_budget == 46
    assert "(39 trials of 46: those that record a parameter count and a pattern)" in \
        _verdict(principle)
    # Trials that store no pattern at all (as planted_study's): no regression, no sentence.
    planted = analyze(planted_study(-1.0), resamples=20).principle
    assert planted.regression is None and "regression" not in _verdict(planted)


def test_the_principle_test_keeps_its_regression_through_json_and_reads_older_files():
    import json

    from nas.results.analysis import PrincipleTest

    principle = analyze(offsets_study(lambda d, r: 0.8 + 0.01 * r), resamples=20).principle
    data = json.loads(json.dumps(principle.to_json()))
    assert PrincipleTest.from_json(data) == principle
    del data["regression"]   # an analyze.json written before regressions
    assert PrincipleTest.from_json(data).regression is None


def test_the_regression_table_lists_every_kept_coefficient():
    from nas.results.analysis import regression_caption, regression_table

    reg = analyze(offsets_study(lambda d, r: 0.8 + 0.01 * r), resamples=20).principle.regression
    headers, rows = regression_table(reg)
    assert headers == ["predictor", "coefficient", "95% CI", "p"]
    assert [row[0] for row in rows] == ["intercept", "mean_distance", "reads_of_input"]
    reads = reg.coefficient("reads_of_input")
    assert rows[2][1:] == [f"{reads.estimate.value:+.4g}", reads.estimate.interval("+.4g"),
                           f"{reads.p_value:.4f}"]
    head, dropped = regression_caption(reg)
    assert f"n = 46, R² = {reg.r_squared:.3f}" in head and dropped.startswith("Dropped: params")


def test_a_row_reads_the_block_input_from_its_spec_or_its_slots_pattern():
    from nas.search.record import TrialRow

    p = make_space("offsets", [12]).all_patterns()[7]
    base = {"hash": p.hash, "seed": 0}

    def row(**attrs):
        trial = optuna.trial.create_trial(value=0.5, user_attrs={**base, **attrs})
        return TrialRow.from_trial(trial, "per_block").reads_of_input

    assert row(spec={"format_version": 1, **p.to_dict()}) == reads_of_input(p)
    assert row(slot="bench", pattern=p.to_dict()) == reads_of_input(p)
    assert row() is None


def test_a_regression_without_degrees_of_freedom_tells_nothing():
    from nas.results.analysis import REGRESSORS, regression_lines
    from nas.stats import ols

    x = np.array([[2.0, 4, 100], [2.5, 5, 90], [3.0, 7, 130], [2.2, 6, 80]])
    reg = ols(x, np.array([0.80, 0.82, 0.79, 0.81]), REGRESSORS)
    assert reg.df == 0
    distance, reads = regression_lines(reg, 4)
    assert distance.endswith("accuracy per unit (no interval: too few trials): too few trials "
                             "to tell.")
    assert reads.endswith(": too few trials to tell.")
