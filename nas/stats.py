"""Small statistics shared by the search and the results: rank correlations, the intervals
of a mean over seeds and of a difference of two such means, and least squares. Pure numpy and
scipy."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval (NaN bounds: the interval is not known)."""
    value: float
    low: float
    high: float

    @classmethod
    def unknown(cls) -> "Estimate":
        return cls(math.nan, math.nan, math.nan)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def interval(self, spec: str) -> str:
        """"[low, high]", each bound formatted with ``spec``."""
        return f"[{self.low:{spec}}, {self.high:{spec}}]"

    def text(self, spec: str) -> str:
        """"value [low, high]" formatted with ``spec``; "-" for a value that is not finite."""
        return f"{self.value:{spec}} {self.interval(spec)}" if math.isfinite(self.value) else "-"

    def ci_json(self) -> dict[str, float]:
        """The bounds as the JSON of a correlation, mean, difference or slope names them."""
        return {"ci_low": self.low, "ci_high": self.high}


@dataclass(frozen=True)
class RankCorrelation:
    """A rank correlation r with its 95% interval, and its two-sided p-value (permutation, or
    asymptotic above :data:`RESAMPLE_LIMIT` pairs); all NaN when it cannot be measured."""
    r: Estimate
    p_value: float

    @classmethod
    def unknown(cls) -> "RankCorrelation":
        return cls(Estimate.unknown(), math.nan)

    def to_json(self) -> dict[str, float]:
        """{"r", "ci_low", "ci_high", "p_value"}; :meth:`from_json` reads it back."""
        return {"r": self.r.value, **self.r.ci_json(), "p_value": self.p_value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RankCorrelation":
        return cls(Estimate(data["r"], data["ci_low"], data["ci_high"]), data["p_value"])


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(rankdata(x), rankdata(y))


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (ties in either variable accounted for)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return math.nan
    if len(x) > _KENDALL_PAIRS_LIMIT:   # O(n log n) beats the n x n sign matrices here
        from scipy.stats import kendalltau
        return float(kendalltau(x, y).statistic)
    return float(_kendall_weighted(x, y, np.ones((1, len(x))))[0])


_KENDALL_PAIRS_LIMIT = 2000


def _ratio(num: np.ndarray, denom: np.ndarray) -> np.ndarray:
    """num / denom, NaN where denom is not positive (a constant sample has no correlation)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, num / np.where(denom > 0, denom, 1), np.nan)


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return _ratio((a * b).sum(axis=1), np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)))


def _signs(v: np.ndarray) -> np.ndarray:
    """The n x n matrix of sign(v_i - v_j)."""
    return np.sign(v[:, None] - v[None, :])


def _untied_pairs(v: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of ``weights`` (how often each value is drawn), the pairs of draws whose values
    differ: (N^2 - sum over tie groups of the group's count^2) / 2."""
    _, group = np.unique(v, return_inverse=True)
    counts = weights @ (group[:, None] == np.arange(group.max() + 1)).astype(float)
    total = weights.sum(axis=1)
    return (total ** 2 - (counts ** 2).sum(axis=1)) / 2


def _kendall_weighted(u: np.ndarray, v: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Kendall tau-b of the sample that draws point i weights[r, i] times, per row r: the
    concordance of pairs of draws is w^T S w / 2 with S the pairwise sign products."""
    s = _signs(u) * _signs(v)
    numer = ((weights @ s) * weights).sum(axis=1) / 2
    return _ratio(numer, np.sqrt(_untied_pairs(u, weights) * _untied_pairs(v, weights)))


def _kendall_shuffled(u: np.ndarray, v: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Kendall tau-b of u with v[perm[r]], per row r. In u's order, each point is concordant
    with the earlier points of strictly smaller u whose v is smaller and discordant with those
    whose v is larger: n vectorised comparisons over all rows (ties leave the denominator)."""
    order = np.argsort(u, kind="stable")
    ranked = v[perm][:, order]
    before = np.searchsorted(u[order], u[order], side="left")   # earlier points, u strictly less
    numer = np.zeros(len(perm))
    for b, s in enumerate(before):
        earlier, here = ranked[:, :s], ranked[:, b:b + 1]
        numer += np.count_nonzero(earlier < here, axis=1) - np.count_nonzero(earlier > here, axis=1)
    ones = np.ones((1, len(u)))
    return _ratio(numer, np.sqrt(_untied_pairs(u, ones) * _untied_pairs(v, ones)))


def partial_r(rxy: np.ndarray | float, rxz: np.ndarray | float,
              ryz: np.ndarray | float) -> np.ndarray:
    """First-order partial correlation of x and y given z from the three pairwise ones."""
    rxy, rxz, ryz = (np.asarray(v, dtype=float) for v in (rxy, rxz, ryz))
    return _ratio(rxy - rxz * ryz, np.sqrt(np.maximum((1 - rxz ** 2) * (1 - ryz ** 2), 0.0)))


RESAMPLE_LIMIT = 500
"""Up to this many pairs ``correlate`` resamples (percentile bootstrap, permutation test);
above it the interval and p-value are asymptotic: Fisher z with the standard errors of
Bonett & Wright (2000) for Spearman and Fieller et al. (1957) for Kendall, and the t- (Spearman)
or normal (Kendall) approximation of the null distribution; Kendall's widened for ties."""


def correlate(x: np.ndarray, y: np.ndarray, method: str, z: np.ndarray | None = None, *,
              resamples: int = 2000, seed: int = 0) -> RankCorrelation:
    """The rank correlation of x and y (partial on z when given):
    a percentile bootstrap 95% CI over pairs and a permutation test that shuffles y, every
    resample at once; asymptotic above ``RESAMPLE_LIMIT`` pairs."""
    if method not in ("spearman", "kendall"):
        raise ValueError(f"unknown rank correlation {method!r}")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    zz = None if z is None else np.asarray(z, dtype=float)
    n = len(x)
    base = spearman if method == "spearman" else kendall
    r = base(x, y) if zz is None else float(partial_r(base(x, y), base(x, zz), base(y, zz)))
    if n > RESAMPLE_LIMIT:
        ties = _kendall_tie_factor(x, y) if method == "kendall" else 1.0
        low, high, p = _asymptotic(r, n, method, controls=int(zz is not None), ties=ties)
        return RankCorrelation(Estimate(r, low, high), p)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (resamples, n))
    # One permutation at a time keeps the draws those of rng.permutation(y), as before.
    perm = np.array([rng.permutation(n) for _ in range(resamples)], dtype=int).reshape(-1, n)
    if method == "spearman":
        from scipy.stats import rankdata as ranks

        def boot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return pearson_rows(ranks(a[idx], axis=1), ranks(b[idx], axis=1))

        def shuffled(a: np.ndarray, b: np.ndarray) -> np.ndarray:   # a with b shuffled
            return pearson_rows(np.broadcast_to(rankdata(a), perm.shape), rankdata(b)[perm])
    else:
        weights = np.zeros((resamples, n))
        np.add.at(weights, (np.arange(resamples)[:, None], idx), 1)

        def boot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return _kendall_weighted(a, b, weights)

        def shuffled(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return _kendall_shuffled(a, b, perm)
    if zz is None:
        boots, null = boot(x, y), shuffled(x, y)
    else:   # under the permutation only y moves: corr(x, z) stays put
        boots = partial_r(boot(x, y), boot(x, zz), boot(y, zz))
        null = partial_r(shuffled(x, y), base(x, zz), shuffled(zz, y))
    boots = boots[np.isfinite(boots)]
    low, high = np.percentile(boots, [2.5, 97.5]) if len(boots) else (np.nan, np.nan)
    extreme = int(np.count_nonzero(np.abs(null) >= abs(r) - 1e-12))
    return RankCorrelation(Estimate(r, float(low), float(high)), (extreme + 1) / (resamples + 1))


def interval_headers(n: int) -> tuple[str, str]:
    """Column names of the CI and the p-value ``correlate`` gives on ``n`` pairs."""
    if n > RESAMPLE_LIMIT:
        return "95% CI (Fisher z)", "p (asymptotic)"
    return "95% CI", "p (permutation)"


def _kendall_tie_factor(x: np.ndarray, y: np.ndarray) -> float:
    """The null standard deviation of Kendall's tau-b with the ties of x and y (Kendall 1970,
    as scipy's kendalltau) over the one without ties: ties widen it."""
    n = len(x)
    t = np.unique(x, return_counts=True)[1].astype(float)
    u = np.unique(y, return_counts=True)[1].astype(float)
    var_s = ((n * (n - 1) * (2 * n + 5) - (t * (t - 1) * (2 * t + 5)).sum()
              - (u * (u - 1) * (2 * u + 5)).sum()) / 18
             + (t * (t - 1)).sum() * (u * (u - 1)).sum() / (2 * n * (n - 1))
             + (t * (t - 1) * (t - 2)).sum() * (u * (u - 1) * (u - 2)).sum()
             / (9 * n * (n - 1) * (n - 2)))
    pairs = n * (n - 1) / 2
    untied_pairs = math.sqrt((pairs - (t * (t - 1)).sum() / 2) * (pairs - (u * (u - 1)).sum() / 2))
    if var_s <= 0 or untied_pairs == 0:
        return math.nan
    return math.sqrt(var_s) / untied_pairs / math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))


def _asymptotic(r: float, n: int, method: str, controls: int,
                ties: float = 1.0) -> tuple[float, float, float]:
    """(CI low, CI high, p) of a rank correlation from its asymptotic distribution; ``ties``
    scales Kendall's standard errors (:func:`_kendall_tie_factor`)."""
    from scipy.stats import norm
    from scipy.stats import t as student
    if not (math.isfinite(r) and math.isfinite(ties)):
        return math.nan, math.nan, math.nan
    rc = min(max(r, -1 + 1e-12), 1 - 1e-12)
    if method == "spearman":
        se = math.sqrt((1 + rc * rc / 2) / (n - 3 - controls))
        df = n - 2 - controls
        p = 2 * float(student.sf(abs(rc) * math.sqrt(df / (1 - rc * rc)), df))
    else:
        se = ties * math.sqrt(0.437 / (n - 4 - controls))
        null_sd = ties * math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))
        p = 2 * float(norm.sf(abs(rc) / null_sd))
    half = 1.959963984540054 * se
    return math.tanh(math.atanh(rc) - half), math.tanh(math.atanh(rc) + half), p


def thin(n: int, limit: int, keep: Sequence[int] = ()) -> list[int]:
    """Indices of an even sample of ``n`` items for a figure: all of them up to ``limit``,
    else every k-th (k = ceil(n / limit)) together with the indices in ``keep``, in order."""
    if n <= limit:
        return list(range(n))
    step = -(-n // limit)
    return sorted(set(range(0, n, step)) | {i for i in keep if 0 <= i < n})


def spearman_brown(r: float, k: float) -> float:
    """The reliability of a mean of ``k`` measurements whose pairwise correlation is ``r``
    (NaN where the formula has no meaning: r at or below -1 / (k - 1))."""
    denom = 1 + (k - 1) * r
    return k * r / denom if denom > 0 else math.nan


def spearman_matrix(a: np.ndarray) -> np.ndarray:
    """The Spearman correlation of every pair of columns of ``a`` (rows: the observations);
    NaN beside a constant column."""
    ranks = np.column_stack([rankdata(column) for column in np.asarray(a, dtype=float).T])
    ranks -= ranks.mean(axis=0)
    cov = ranks.T @ ranks
    scale = np.sqrt(np.diag(cov))
    return _ratio(cov, np.outer(scale, scale))


def mean_pair_correlation(corr: np.ndarray, counts: np.ndarray | None = None) -> float:
    """The mean correlation over every pair of distinct columns of a correlation matrix; with
    ``counts``, over the pairs of a sample that draws column i ``counts[i]`` times (a bootstrap
    resample), a column never paired with itself. NaN without a pair."""
    w = np.ones(len(corr)) if counts is None else np.asarray(counts, dtype=float)
    pairs = (w.sum() ** 2 - (w ** 2).sum()) / 2
    if pairs <= 0:
        return math.nan
    return float((w @ corr @ w - (w ** 2 * np.diag(corr)).sum()) / 2 / pairs)


def attenuation_cap(reliability_a: float, reliability_b: float) -> float:
    """The highest correlation two measures of these reliabilities can show (their true scores
    agreeing perfectly): sqrt(reliability_a x reliability_b); NaN unless both are positive."""
    if not (reliability_a > 0 and reliability_b > 0):
        return math.nan
    return math.sqrt(reliability_a * reliability_b)


def disattenuate(r: float, reliability_a: float, reliability_b: float) -> float:
    """Spearman's correction for attenuation: the correlation of the true scores, r divided by
    :func:`attenuation_cap` (NaN where that is undefined; above 1 where sampling noise puts r
    above the cap)."""
    return r / attenuation_cap(reliability_a, reliability_b)


def t_quantile(df: float, level: float = 0.95) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t
    return float(t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class MeanCI:
    """The mean of ``n`` runs (seeds) with its 95% t-interval and standard error; with one run
    the spread is unknown and the interval is NaN."""
    mean: Estimate
    std: float       # sample standard deviation (ddof 1); NaN for one run
    se: float        # std / sqrt(n)
    n: int

    def to_json(self) -> dict[str, Any]:
        """{"mean", "std", "se", "ci_low", "ci_high", "n"}; :meth:`from_json` reads it back."""
        return {"mean": self.mean.value, "std": self.std, "se": self.se,
                **self.mean.ci_json(), "n": self.n}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "MeanCI":
        return cls(Estimate(data["mean"], data["ci_low"], data["ci_high"]), data["std"],
                   data["se"], data["n"])


def mean_ci(values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf)
            ) -> MeanCI:
    """Mean and 95% Student-t interval of independent runs, the interval cut to ``bounds``
    (an accuracy's: 0..1)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("mean_ci of no values")
    mean = float(x.mean())
    if n == 1:
        return MeanCI(Estimate(mean, math.nan, math.nan), math.nan, math.nan, 1)
    std = float(x.std(ddof=1))
    se = std / math.sqrt(n)
    half = t_quantile(n - 1) * se
    return MeanCI(Estimate(mean, max(bounds[0], mean - half), min(bounds[1], mean + half)),
                  std, se, n)


@dataclass(frozen=True)
class Difference:
    """a - b of two means over independent runs, with Welch's interval."""
    diff: Estimate
    se: float
    df: float

    def to_json(self) -> dict[str, Any]:
        """{"diff", "se", "ci_low", "ci_high", "df"}; :meth:`from_json` reads it back."""
        return {"diff": self.diff.value, "se": self.se, **self.diff.ci_json(), "df": self.df}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Difference":
        return cls(Estimate(data["diff"], data["ci_low"], data["ci_high"]), data["se"],
                   data["df"])


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """Mean of ``a`` minus mean of ``b`` with Welch's t-interval at ``level`` (unequal
    variances, Welch-Satterthwaite degrees of freedom). NaN interval when either side has one
    run."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return Difference(Estimate(diff, math.nan, math.nan), math.nan, math.nan)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return Difference(Estimate(diff, diff, diff), 0.0, math.inf)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = t_quantile(df, level) * se
    return Difference(Estimate(diff, diff - half, diff + half), se, float(df))


def pooled_std(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """(pooled within-group standard deviation, its degrees of freedom) over the groups with
    at least two values: sqrt(sum of squared deviations from each group's mean / sum(n - 1)).
    NaN and 0 when no group has two values."""
    ss, df = 0.0, 0
    for g in groups:
        x = np.asarray(g, dtype=float)
        if len(x) >= 2:
            ss += float(((x - x.mean()) ** 2).sum())
            df += len(x) - 1
    return (math.sqrt(ss / df), df) if df else (math.nan, 0)


@dataclass(frozen=True)
class Slope:
    """The least-squares slope of y on x with its 95% Student-t interval."""
    slope: Estimate
    n: int

    def to_json(self) -> dict[str, Any]:
        """{"slope", "ci_low", "ci_high", "n"}; :meth:`from_json` reads it back."""
        return {"slope": self.slope.value, **self.slope.ci_json(), "n": self.n}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Slope":
        return cls(Estimate(data["slope"], data["ci_low"], data["ci_high"]), data["n"])


def ols_slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> Slope:
    """The slope of the least-squares line of ``y`` on ``x`` and its 95% t-interval (NaN
    where x does not vary or there are fewer than 3 points)."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xa)
    sxx = float(((xa - xa.mean()) ** 2).sum())
    if n < 3 or sxx == 0:
        return Slope(Estimate.unknown(), n)
    b = float(((xa - xa.mean()) * (ya - ya.mean())).sum() / sxx)
    resid = ya - ya.mean() - b * (xa - xa.mean())
    se = math.sqrt(float((resid ** 2).sum()) / (n - 2) / sxx)
    half = t_quantile(n - 2) * se
    return Slope(Estimate(b, b - half, b + half), n)


@dataclass(frozen=True)
class BlockedDesign:
    """Patterns x seeds as a randomized block design: every pattern trained with the same
    seeds, a seed (its initial weights, its data order) a block. A two-way analysis of variance
    without interaction: the residual variance pools every pattern's seed-to-seed noise once
    the seeds' shared effects are taken out, so no pattern's interval rests on its own few
    seeds (nor on a variance picked by the selection)."""
    means: np.ndarray          # per pattern, over the seeds
    residual_std: float        # pooled: sqrt(residual mean square)
    df: int                    # (patterns - 1) x (seeds - 1)
    f: float                   # omnibus: do the patterns differ at all?
    p_value: float             # of F with (patterns - 1, df) degrees of freedom
    seeds: int

    def difference(self, a: int, b: int, level: float = 0.95) -> Difference:
        """Pattern ``a`` minus pattern ``b``, paired by seed, with the pooled interval."""
        diff = float(self.means[a] - self.means[b])
        se = self.residual_std * math.sqrt(2 / self.seeds)
        if not self.df or not math.isfinite(se):
            return Difference(Estimate(diff, math.nan, math.nan), math.nan, math.nan)
        half = t_quantile(self.df, level) * se
        return Difference(Estimate(diff, diff - half, diff + half), se, float(self.df))

    def p_difference(self, a: int, b: int) -> float:
        """Two-sided p-value of pattern ``a`` minus pattern ``b`` (pooled, paired by seed)."""
        from scipy.stats import t
        d = self.difference(a, b)
        if not math.isfinite(d.se):
            return math.nan
        if d.se == 0:
            return 0.0 if d.diff.value else 1.0
        return float(2 * t.sf(abs(d.diff.value) / d.se, self.df))


def blocked_design(table: Sequence[Sequence[float]] | np.ndarray) -> BlockedDesign:
    """:class:`BlockedDesign` of a patterns x seeds table of accuracies (complete: every
    pattern at every seed)."""
    from scipy.stats import f as fisher
    x = np.asarray(table, dtype=float)
    p, s = x.shape
    grand = x.mean()
    rows, cols = x.mean(axis=1), x.mean(axis=0)
    resid = x - rows[:, None] - cols[None, :] + grand
    df = (p - 1) * (s - 1)
    ms_resid = float((resid ** 2).sum() / df) if df else math.nan
    ms_rows = float(s * ((rows - grand) ** 2).sum() / (p - 1)) if p > 1 else math.nan
    if not df or p < 2:
        f = pval = math.nan
    elif ms_resid == 0:
        f, pval = (math.inf, 0.0) if ms_rows > 0 else (math.nan, math.nan)
    else:
        f = ms_rows / ms_resid
        pval = float(fisher.sf(f, p - 1, df))
    return BlockedDesign(rows, math.sqrt(ms_resid) if df else math.nan, df, f, pval, s)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m, out, running = len(p_values), [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def holm_levels(p_values: Sequence[float], level: float = 0.95) -> list[float]:
    """The confidence level of each comparison's Holm interval, in the order given: the
    comparison of the k-th smallest p-value (k = 1..m) at 1 - alpha / (m - k + 1), the level
    its step of Holm's procedure tests at, while the steps before it rejected; from the first
    step that does not reject, every later comparison at that step's level (Holm stops there,
    so no later interval may exclude 0 where Holm's test does not reject)."""
    alpha, m = 1 - level, len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [0.0] * m
    stopped: float | None = None
    for rank, i in enumerate(order):
        step = 1 - alpha / (m - rank)
        out[i] = step if stopped is None else stopped
        if stopped is None and not p_values[i] <= alpha / (m - rank):  # NaN stops too
            stopped = step
    return out


def cross_fit_lead(table: np.ndarray, searched: Sequence[int],
                   templates: Sequence[int]) -> float:
    """The lead of the best searched pattern over the best template, estimated without the
    winner's selection bias: both picked on one half of the seeds (the first ceil(S/2)) and
    their difference measured on the other, then the halves swapped; the mean of the two.
    NaN with fewer than two seeds or no pattern on either side."""
    x = np.asarray(table, dtype=float)
    s = x.shape[1]
    if s < 2 or not searched or not templates:
        return math.nan
    half = -(-s // 2)
    halves = (np.arange(half), np.arange(half, s))
    leads = []
    for pick, measure in (halves, halves[::-1]):
        chosen = x[:, pick].mean(axis=1)
        w = max(searched, key=lambda i: chosen[i])
        t = max(templates, key=lambda i: chosen[i])
        leads.append(float(x[w, measure].mean() - x[t, measure].mean()))
    return float(np.mean(leads))


@dataclass(frozen=True)
class Coefficient:
    """One coefficient of a :class:`Regression`: its estimate with the 95% t-interval, its
    standard error and its two-sided t-test p-value (NaN when the residual has no degrees of
    freedom)."""
    name: str
    estimate: Estimate
    se: float
    p_value: float

    def to_json(self) -> dict[str, Any]:
        """{"name", "estimate", "ci_low", "ci_high", "se", "p_value"}."""
        return {"name": self.name, "estimate": self.estimate.value, **self.estimate.ci_json(),
                "se": self.se, "p_value": self.p_value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Coefficient":
        return cls(data["name"], Estimate(data["estimate"], data["ci_low"], data["ci_high"]),
                   data["se"], data["p_value"])


INTERCEPT = "intercept"


@dataclass(frozen=True)
class Regression:
    """Ordinary least squares of y on named predictors with an intercept. ``coefficients``:
    the intercept's, then each kept predictor's in the order given; ``dropped``: the
    predictors left out because, on these rows, they are an exact linear function of the
    intercept and the predictors before them (their effect cannot be told apart)."""
    coefficients: tuple[Coefficient, ...]
    dropped: tuple[str, ...]
    n: int
    df: int            # n - the number of coefficients (the intercept's included)
    r_squared: float   # NaN when y does not vary

    def coefficient(self, name: str) -> Coefficient | None:
        """The coefficient of ``name``; None where it was dropped or never a predictor."""
        return next((c for c in self.coefficients if c.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """{"coefficients", "dropped", "n", "df", "r_squared"}; :meth:`from_json` reads it
        back."""
        return {"coefficients": [c.to_json() for c in self.coefficients],
                "dropped": list(self.dropped), "n": self.n, "df": self.df,
                "r_squared": self.r_squared}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Regression":
        return cls(tuple(Coefficient.from_json(c) for c in data["coefficients"]),
                   tuple(data["dropped"]), data["n"], data["df"], data["r_squared"])


def _full_rank(columns: np.ndarray) -> bool:
    """Whether the columns are linearly independent, judged on their unit-length versions so
    that a predictor's scale (parameter counts beside distances) does not decide it."""
    norms = np.linalg.norm(columns, axis=0)
    if columns.shape[0] < columns.shape[1] or not np.all(norms > 0):
        return False
    s = np.linalg.svd(columns / norms, compute_uv=False)
    return bool(s[-1] > s[0] * 1e-10 * max(columns.shape))


def ols(x: np.ndarray, y: np.ndarray, names: Sequence[str]) -> Regression:
    """Least squares of ``y`` on the columns of ``x`` (n x k, column j named ``names[j]``)
    with an intercept: estimates, standard errors from s^2 (X'X)^-1, 95% t-intervals and
    two-sided p-values on n - (kept predictors + 1) degrees of freedom (NaN below 1). A
    predictor that is an exact linear function of the intercept and the kept predictors
    before it (a constant one among them) is dropped and named in ``dropped``."""
    from scipy.stats import t as student
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.ndim == 1:
        xa = xa[:, None]
    n = len(ya)
    if xa.shape != (n, len(names)):
        raise ValueError(f"ols: x is {xa.shape}, expected ({n}, {len(names)}) for {names}")
    if INTERCEPT in names:
        raise ValueError(f"ols: {INTERCEPT!r} names the intercept, not a predictor")
    if n == 0:
        raise ValueError("ols of no rows")
    kept: list[int] = []
    dropped: list[int] = []
    for j in range(len(names)):
        # Centred, columns independent of the intercept and of each other stay independent.
        columns = xa[:, kept + [j]]
        (kept if _full_rank(columns - columns.mean(axis=0)) else dropped).append(j)
    design = np.column_stack([np.ones(n), xa[:, kept]])
    q, r = np.linalg.qr(design)
    beta = np.linalg.solve(r, q.T @ ya)
    resid = ya - design @ beta
    df = n - design.shape[1]
    tss = float(((ya - ya.mean()) ** 2).sum())
    r_squared = 1 - float(resid @ resid) / tss if tss > 0 else math.nan
    if df < 1:
        se = np.full(len(beta), math.nan)
    else:
        r_inv = np.linalg.inv(r)
        se = np.sqrt(float(resid @ resid) / df * (r_inv * r_inv).sum(axis=1))
    coefficients = []
    for name, b, s in zip([INTERCEPT, *(names[j] for j in kept)], beta, se):
        b, s = float(b), float(s)
        if not math.isfinite(s):
            coefficients.append(Coefficient(name, Estimate(b, math.nan, math.nan), s, math.nan))
            continue
        half = t_quantile(df) * s
        p = float(2 * student.sf(abs(b) / s, df)) if s > 0 else (0.0 if b else 1.0)
        coefficients.append(Coefficient(name, Estimate(b, b - half, b + half), s, p))
    return Regression(tuple(coefficients), tuple(names[j] for j in dropped), n, df, r_squared)
