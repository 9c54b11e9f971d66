"""Small statistics shared by the search and the results: rank correlations, and the intervals
of a mean over seeds and of a difference of two such means. Pure numpy and scipy."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    denom = np.sqrt(np.count_nonzero(dx) * np.count_nonzero(dy))
    return float((dx * dy).sum() / denom) if denom > 0 else float("nan")


def spearman_brown(r: float, k: float) -> float:
    """The reliability of a mean of ``k`` measurements whose pairwise correlation is ``r``
    (NaN where the formula has no meaning: r at or below -1 / (k - 1))."""
    denom = 1 + (k - 1) * r
    return k * r / denom if denom > 0 else math.nan


def t_quantile(df: float, level: float = 0.95) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t
    return float(t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class MeanCI:
    """The mean of ``n`` runs (seeds) with its standard error and 95% t-interval; with one run
    the spread is unknown and the interval is NaN."""
    mean: float
    std: float       # sample standard deviation (ddof 1); NaN for one run
    se: float        # std / sqrt(n)
    ci_low: float
    ci_high: float
    n: int


def mean_ci(values: Sequence[float]) -> MeanCI:
    """Mean and 95% Student-t interval of independent runs."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("mean_ci of no values")
    mean = float(x.mean())
    if n == 1:
        return MeanCI(mean, math.nan, math.nan, math.nan, math.nan, 1)
    std = float(x.std(ddof=1))
    se = std / math.sqrt(n)
    half = t_quantile(n - 1) * se
    return MeanCI(mean, std, se, mean - half, mean + half, n)


@dataclass(frozen=True)
class Difference:
    """a - b of two means over independent runs, with Welch's 95% interval."""
    diff: float
    se: float
    ci_low: float
    ci_high: float
    df: float

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """Mean of ``a`` minus mean of ``b`` with Welch's t-interval at ``level`` (unequal
    variances, Welch-Satterthwaite degrees of freedom). NaN interval when either side has one
    run."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return Difference(diff, math.nan, math.nan, math.nan, math.nan)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return Difference(diff, 0.0, diff, diff, math.inf)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = t_quantile(df, level) * se
    return Difference(diff, se, diff - half, diff + half, float(df))


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
    slope: float
    ci_low: float
    ci_high: float
    n: int


def ols_slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> Slope:
    """The slope of the least-squares line of ``y`` on ``x`` and its 95% t-interval (NaN
    where x does not vary or there are fewer than 3 points)."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xa)
    sxx = float(((xa - xa.mean()) ** 2).sum())
    if n < 3 or sxx == 0:
        return Slope(math.nan, math.nan, math.nan, n)
    b = float(((xa - xa.mean()) * (ya - ya.mean())).sum() / sxx)
    resid = ya - ya.mean() - b * (xa - xa.mean())
    se = math.sqrt(float((resid ** 2).sum()) / (n - 2) / sxx)
    half = t_quantile(n - 2) * se
    return Slope(b, b - half, b + half, n)
