"""Does the principle hold? Rank correlation of accuracy with backprop distance, read from the
study storage only: Spearman and Kendall with bootstrap CIs and permutation p-values (asymptotic
ones above nas.stats.RESAMPLE_LIMIT trials), the same after controlling for parameter count,
a least-squares regression of accuracy on mean distance with the reads of the block input and
the parameter count held equal, and a per-template summary."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ..errors import UserError
from ..search.config import stored_config, study_style
from ..search.experiment.evidence import (
    Evidence,
    describe_best,
    describe_curse,
    describe_noise,
    describe_winner,
)
from ..search.experiment.study import study_evidence
from ..search.record import OLD_BLOCK_OUTPUT, OLD_BUDGET_MODE, OLD_STYLE, TrialRecord, TrialRow
from ..stats import (
    Coefficient,
    RankCorrelation,
    Regression,
    Slope,
    correlate,
    interval_headers,
    ols,
    ols_slope,
)

DISTANCES = ("mbd", "mean_distance")
# One sign convention for every correlation table: r is the rank correlation of accuracy with
# the quantity exactly as its row names it, and the header says which sign is better.
DISTANCE_SIGN = "< 0: shorter is better"           # a distance: the principle predicts r < 0
SCORE_SIGN = "r > 0: a higher score goes with higher accuracy; -X is X negated"
# The regression's predictors, as TrialRow names them: mean distance first, so that it is
# dropped only where it is constant (a later predictor collinear with it goes instead); params
# last, as in the offsets spaces it is an exact linear function of the reads of the block input.
REGRESSORS = ("mean_distance", "reads_of_input", "params")
REGRESSOR_WORDS = {"mean_distance": "mean distance",
                   "reads_of_input": "the reads of the block input",
                   "params": "the parameter count"}


@dataclass(frozen=True)
class Correlation:
    """The rank correlation of accuracy with one distance, on ``n`` trials."""
    method: str            # spearman | kendall
    against: str           # mbd | mean_distance
    controlled_for: str    # "" or "params"
    rank: RankCorrelation
    n: int

    def to_json(self) -> dict[str, Any]:
        """Its fields by name, the correlation's flat (NaN kept: JSON's NaN)."""
        return {"method": self.method, "against": self.against,
                "controlled_for": self.controlled_for, **self.rank.to_json(), "n": self.n}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Correlation":
        return cls(data["method"], data["against"], data["controlled_for"],
                   RankCorrelation.from_json(data), data["n"])


@dataclass(frozen=True)
class TemplateSummary:
    """One baseline template's runs in one style, budget mode and block output convention:
    accuracy over seeds, and its pattern's metrics."""
    template: str
    style: str
    budget_mode: str
    block_output: str
    seeds: int
    accuracies: tuple[float, ...] | None  # per seed; None: read from an analysis before them
    accuracy_mean: float
    accuracy_std: float
    connections: int | None
    mbd: int | None
    mean_distance: float | None
    params: int | None

    def to_json(self) -> dict[str, Any]:
        """Its fields by name; :meth:`from_json` reads it back."""
        accuracies = None if self.accuracies is None else list(self.accuracies)
        return {**asdict(self), "accuracies": accuracies}

    @classmethod
    def from_json(cls, data: dict[str, Any], style: str) -> "TemplateSummary":
        """A summary as JSON; those of analyses made before the baselines had a style (the
        analysis's ``style``), a budget mode ("exact") or a block output ("template"), and
        before per-seed accuracies, are decoded here."""
        accuracies = data.get("accuracies")
        return cls(**{**data, "style": data.get("style", style),
                      "budget_mode": data.get("budget_mode", OLD_BUDGET_MODE),
                      "block_output": data.get("block_output", OLD_BLOCK_OUTPUT),
                      "accuracies": None if accuracies is None else tuple(accuracies)})


@dataclass(frozen=True)
class PrincipleTest:
    """The principle test of one study at one connection budget: the rank correlations of
    accuracy with backprop distance, and the baseline templates' accuracies."""
    study: str
    style: str                      # the search space's network style
    layers: tuple[int, ...] | None  # layers per block (None: the study stores no config)
    budget: int
    trials_at_budget: int           # the trials correlated: the space's style, at the budget
    trials_total: int               # trained trials at every budget and style
    resamples: int
    correlations: tuple[Correlation, ...]
    templates: tuple[TemplateSummary, ...]
    accuracy_range: tuple[float, float]  # over the trials at the budget
    slope: Slope | None = None      # accuracy per unit of mean distance (None: older analyses)
    # Accuracy on REGRESSORS, over the trials at the budget that record all of them (None:
    # no such trial, or an analysis made before regressions).
    regression: Regression | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN kept: JSON's NaN; no "slope" or "regression" for an analysis read
        from one made before them); :meth:`from_json` reads it back."""
        return {"study": self.study, "style": self.style,
                "layers": None if self.layers is None else list(self.layers),
                "budget": self.budget, "trials_at_budget": self.trials_at_budget,
                "trials_total": self.trials_total, "resamples": self.resamples,
                "correlations": [c.to_json() for c in self.correlations],
                "templates": [t.to_json() for t in self.templates],
                "accuracy_range": list(self.accuracy_range),
                **({} if self.slope is None else {"slope": self.slope.to_json()}),
                **({} if self.regression is None else
                   {"regression": self.regression.to_json()})}

    def correlation(self, against: str = "mean_distance", method: str = "spearman",
                    controlled_for: str = "") -> Correlation:
        """One of its correlations."""
        return next(c for c in self.correlations if (c.against, c.method, c.controlled_for)
                    == (against, method, controlled_for))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PrincipleTest":
        """The principle test of an :class:`Analysis`'s JSON (its evidence, if any, aside);
        analyses made before styles (per_block) and stored layers are decoded here."""
        style = data.get("style", OLD_STYLE)
        layers = data.get("layers")
        low, high = data["accuracy_range"]
        slope, regression = data.get("slope"), data.get("regression")
        return cls(data["study"], style, None if layers is None else tuple(layers),
                   data["budget"], data["trials_at_budget"], data["trials_total"],
                   data["resamples"], tuple(Correlation.from_json(c) for c in data["correlations"]),
                   tuple(TemplateSummary.from_json(t, style) for t in data["templates"]),
                   (low, high), None if slope is None else Slope.from_json(slope),
                   None if regression is None else Regression.from_json(regression))


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze` finds: the principle test and the study's evidence."""
    principle: PrincipleTest
    evidence: Evidence

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: the principle test's fields, then the evidence's under "evidence"."""
        return {**self.principle.to_json(), "evidence": self.evidence.to_json()}


def study_rows(study: optuna.Study, reused: bool = False) -> list[TrialRow]:
    """One row per completed trial with its metrics: the trained ones, and with ``reused``
    also those that reuse a twin's result (a baseline whose pattern another slot trained)."""
    rows, style = [], study_style(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = TrialRecord.from_trial(t)
        if (r.is_reused and not reused) or r.hash is None or r.is_apart:
            continue
        rows.append(TrialRow.from_trial(t, style))
    return rows


def principle_rows(study: optuna.Study, rows: list[TrialRow],
                   budget: int | None = None) -> tuple[int, list[TrialRow]]:
    """(budget, the rows the principle is tested on): trials in the search space's style at
    one connection budget (default: the study's)."""
    budget = study_budget(study, rows) if budget is None else budget
    style = study_style(study)
    return budget, [r for r in rows if r.connections == budget and r.style == style]


def study_budget(study: optuna.Study, rows: list[TrialRow]) -> int:
    budget = (stored_config(study) or {}).get("search_space", {}).get("budget")
    if budget is None:
        counts = [r.connections for r in rows]
        budget = max(set(counts), key=counts.count)
    return int(budget)


def analyze(study: optuna.Study, budget: int | None = None, resamples: int = 2000,
            seed: int = 0) -> Analysis:
    """The principle test on the study's completed trials at one connection budget, and the
    study's evidence. The regression leaves out the trials whose records lack a parameter count
    or a pattern (older records), as the correlation controlled for params leaves out the
    former; its ``n`` says how many it used."""
    rows = study_rows(study)
    if not rows:
        raise UserError(f"study {study.study_name!r} has no completed trials to analyze")
    budget, at_budget = principle_rows(study, rows, budget)
    if len(at_budget) < 4:
        raise UserError(f"only {len(at_budget)} completed {study_style(study)} trials at the "
                        f"budget of {budget} connections; at least 4 are needed for a "
                        f"correlation")
    acc = np.array([r.accuracy for r in at_budget])
    params = np.array([r.params for r in at_budget], dtype=float)
    correlations = []
    for against in DISTANCES:
        dist = np.array([getattr(r, against) for r in at_budget], dtype=float)
        for method in ("spearman", "kendall"):
            for control in ("", "params"):
                # control: the trials whose records carry a parameter count
                keep = np.isfinite(params) if control else np.ones(len(acc), dtype=bool)
                z = params[keep] if control else None
                rank = correlate(dist[keep], acc[keep], method, z, resamples=resamples,
                                 seed=seed)
                correlations.append(Correlation(method, against, control, rank,
                                                int(keep.sum())))
    x = np.array([[getattr(r, name) for name in REGRESSORS] for r in at_budget], dtype=float)
    recorded = np.isfinite(x).all(axis=1)
    regression = ols(x[recorded], acc[recorded], REGRESSORS) if recorded.any() else None
    layers = (stored_config(study) or {}).get("search_space", {}).get("layers")
    principle = PrincipleTest(
        study.study_name, study_style(study), None if layers is None else tuple(layers), budget,
        len(at_budget), len(rows), resamples, tuple(correlations),
        template_summary(study_rows(study, reused=True)),
        (float(acc.min()), float(acc.max())),
        ols_slope(np.array([r.mean_distance for r in at_budget], dtype=float), acc), regression)
    return Analysis(principle, study_evidence(study))


def template_summary(rows: list[TrialRow]) -> tuple[TemplateSummary, ...]:
    """Mean and standard deviation of accuracy over seeds for each baseline template, style,
    budget mode and block output convention."""
    def key(r: TrialRow) -> tuple[str, str, str, str]:
        return r.template, r.style, r.budget_mode, r.block_output

    out = []
    for group in dict.fromkeys(key(r) for r in rows if r.template):
        runs = [r for r in rows if key(r) == group]
        acc = np.array([r.accuracy for r in runs])
        first = runs[0]
        name, style, mode, output = group
        out.append(TemplateSummary(
            template=name, style=style, budget_mode=mode, block_output=output, seeds=len(runs),
            accuracies=tuple(float(a) for a in acc), accuracy_mean=float(acc.mean()),
            accuracy_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            connections=first.connections, mbd=first.mbd, mean_distance=first.mean_distance,
            params=first.params))
    return tuple(out)


Table = tuple[list[str], list[list[str]]]  # (headers, rows of formatted cells)


def correlation_table(result: PrincipleTest) -> Table:
    """The correlations of a principle test, formatted once for text, HTML and markdown."""
    headers = ["distance", "method", "controlled for", f"r ({DISTANCE_SIGN})",
               *interval_headers(result.trials_at_budget), "n"]
    rows = [[c.against, c.method, c.controlled_for or "-", f"{c.rank.r.value:+.3f}",
             c.rank.r.interval("+.3f"), f"{c.rank.p_value:.4f}", str(c.n)]
            for c in result.correlations]
    return headers, rows


def regression_caption(reg: Regression) -> list[str]:
    """What :func:`regression_table` shows; then, if it dropped predictors, which and why."""
    head = (f"Regression of accuracy on {', '.join(REGRESSORS)} (least squares with an "
            f"intercept, 95% t-intervals; n = {reg.n}, R² = {reg.r_squared:.3f})")
    return [head, *([f"Dropped: {', '.join(reg.dropped)}, on these trials constant or an exact "
                      f"linear function of the predictors before it (its effect cannot be told "
                      f"apart from theirs)."] if reg.dropped else [])]


def regression_table(reg: Regression) -> Table:
    """The coefficients of a regression, formatted once for text, HTML and markdown."""
    rows = [[c.name, f"{c.estimate.value:+.4g}", c.estimate.interval("+.4g"), f"{c.p_value:.4f}"]
            for c in reg.coefficients]
    return ["predictor", "coefficient", "95% CI", "p"], rows


def template_table(result: PrincipleTest) -> Table:
    """The per-template summary of a principle test, formatted once."""
    headers = ["template", "seeds", "accuracy (mean ± std)", "connections", "MBD",
               "mean distance", "params", "style", "budget", "block output"]
    rows = [[t.template, str(t.seeds), f"{t.accuracy_mean:.4f} ± {t.accuracy_std:.4f}",
             str(t.connections), str(t.mbd), f"{t.mean_distance:.3f}", str(t.params),
             t.style, t.budget_mode, t.block_output]
            for t in result.templates]
    return headers, rows


def evidence_lines(ev: Evidence) -> list[str]:
    """The noise, the best single run and the confirmed winner of a study's evidence, a line
    each."""
    curse = describe_curse(ev)
    return [describe_noise(ev.noise), describe_best(ev), describe_winner(ev),
            *([curse] if curse else [])]


def confirmed_table(ev: Evidence) -> Table:
    """The confirmed patterns of a study's evidence, best mean first. Differences from log
    are paired by seed with the variance pooled over every confirmed pattern; the Holm
    interval corrects for comparing every confirmed pattern with log."""
    headers = ["pattern", "hash", "brief accuracy", "confirmed mean", "95% CI", "seeds",
               "vs log", "95% CI (vs log)", "Holm CI (vs log)"]
    rows = []
    for c in ev.confirmed:
        m = c.mean
        rows.append([c.name, c.hash, "-" if np.isnan(c.brief) else f"{c.brief:.4f}",
                     f"{m.mean.value:.4f}", m.mean.interval(".4f"), str(m.n),
                     "-" if c.vs_log is None else f"{c.vs_log.diff.value:+.4f}",
                     *("-" if d is None else d.diff.interval("+.4f")
                       for d in (c.vs_log, c.vs_log_adjusted))])
    return headers, rows


SIGN_CONVENTION = ("r < 0 is the principle's prediction: patterns with shorter backprop "
                   "distances reached higher accuracy")
SIGNIFICANT = 0.05  # the p-value below which (with a CI excluding 0) the verdict names a direction


def verdict(principle: PrincipleTest, ev: Evidence, fidelity: str, dataset: str) -> list[str]:
    """The analysis's answer in sentences: direction and strength of accuracy vs. mean
    distance, the effect per unit of distance, whether it survives controlling for parameter
    count, the sign convention, the noise, and that the accuracies come from brief training
    (``fidelity``, in words) with a measured full-training reference on ``dataset``."""
    c = principle.correlation()
    ctrl = principle.correlation(controlled_for="params")

    def clear(x: Correlation) -> bool:
        return x.rank.p_value < SIGNIFICANT and x.rank.r.excludes_zero

    shown = clear(c)
    r, partial = c.rank.r, ctrl.rank.r
    stat = (f"Spearman r = {r.value:+.3f}, 95% CI {r.interval('+.3f')}, "
            f"p = {c.rank.p_value:.4f}, n = {c.n}")
    if shown:
        head = ("Yes: shorter backprop distance went with higher accuracy" if r.value < 0 else
                "No, the opposite: longer backprop distance went with higher accuracy")
    else:
        head = "Not shown: no clear relation between backprop distance and accuracy"
    lines = [f"{head} in this study ({stat}; at {principle.budget} connections, "
             f"{principle.style}). Sign convention: {SIGN_CONVENTION}."]
    if not shown:
        power = detection_power(PUBLISHED_R, c.n)
        enough = "enough to see one of that size" if power >= 0.8 else \
            "too few patterns to tell whether there is one"
        lines.append(f"With {c.n} patterns, a correlation of the size this project published "
                     f"(Spearman {PUBLISHED_R:+.2f}, {PUBLISHED_AT}) is seen (p < 0.05) in "
                     f"about {power:.0%} of such studies: {enough}.")
    s = principle.slope
    if s is not None and math.isfinite(s.slope.value):
        lines.append(f"Effect size: {s.slope.value:+.4f} accuracy per unit of mean distance "
                     f"(least squares, 95% CI {s.slope.interval('+.4f')}) over a range of "
                     f"{principle.accuracy_range[0]:.4f}..{principle.accuracy_range[1]:.4f}.")
    partial_stat = (f"partial Spearman r = {partial.value:+.3f}, 95% CI "
                    f"{partial.interval('+.3f')}, p = {ctrl.rank.p_value:.4f}")
    if shown:
        survives = "survives" if clear(ctrl) and (partial.value < 0) == (r.value < 0) else \
            "does not survive"
        lines.append(f"Controlling for parameter count, the relation {survives}: "
                     f"{partial_stat}.")
    else:
        lines.append(f"Controlling for parameter count: {partial_stat}.")
    if principle.regression is not None:
        lines.extend(regression_lines(principle.regression, principle.trials_at_budget))
    noise = describe_noise(ev.noise)
    lines.append(noise[0].upper() + noise[1:] + ".")
    reference = FULL_TRAINING.get(dataset)
    lines.append(f"These accuracies come from brief training ({fidelity}): they rank patterns, "
                 f"they are not what the networks reach when fully trained"
                 + (f" (for reference: {reference})." if reference else "."))
    return lines


def _clear(c: Coefficient) -> bool:
    return c.p_value < SIGNIFICANT and c.estimate.excludes_zero


def _coefficient_stat(c: Coefficient, unit: str) -> str:
    """"-0.0123 accuracy per ``unit`` (95% CI [..], p = ..)"; without an interval, says so."""
    if not math.isfinite(c.se):
        return f"{c.estimate.value:+.4f} accuracy per {unit} (no interval: too few trials)"
    return (f"{c.estimate.value:+.4f} accuracy per {unit} (95% CI "
            f"{c.estimate.interval('+.4f')}, p = {c.p_value:.4f})")


def regression_lines(reg: Regression, trials_at_budget: int) -> list[str]:
    """The regression in sentences: the effect of mean distance with the other predictors held
    equal, and that of the reads of the block input with mean distance held equal, in words;
    and which predictors it had to drop."""
    def held_apart_from(name: str) -> str:
        """The other predictors the regression kept, in words."""
        return " and ".join(REGRESSOR_WORDS[c.name] for c in reg.coefficients[1:]
                            if c.name != name) or "nothing else"

    used = f"{reg.n} trials" + ("" if reg.n == trials_at_budget else
                                f" of {trials_at_budget}: those that record a parameter count "
                                f"and a pattern")
    lines = []
    distance = reg.coefficient("mean_distance")
    if distance is not None:
        if not math.isfinite(distance.se):
            effect = "too few trials to tell"
        elif _clear(distance):
            effect = ("shorter backprop distance helps" if distance.estimate.value < 0 else
                      "shorter backprop distance hurts") + " when those are held equal"
        else:
            effect = "no detectable effect of backprop distance when those are held equal"
        lines.append(f"Holding {held_apart_from('mean_distance')} equal in a least-squares "
                     f"regression ({used}), mean distance went with "
                     f"{_coefficient_stat(distance, 'unit')}: {effect}.")
    reads = reg.coefficient("reads_of_input")
    if reads is not None:
        carry = ("too few trials to tell" if not math.isfinite(reads.se) else
                 "they carry an effect of their own" if _clear(reads) else
                 "no detectable effect of their own")
        lines.append(f"The reads of the block input, with {held_apart_from('reads_of_input')} "
                     f"held equal, went with {_coefficient_stat(reads, 'node that reads it')}: "
                     f"{carry}.")
    for name in reg.dropped:
        lines.append(f"{REGRESSOR_WORDS[name][0].upper()}{REGRESSOR_WORDS[name][1:]} was left "
                     f"out of the regression: on these trials it is constant or an exact linear "
                     f"function of the predictors before it, so its effect cannot be told apart "
                     f"from theirs.")
    return lines


# The principle's correlation this project published (mean distance, Spearman; tests/
# test_published.py checks it against the study it names), for the verdict's power sentence.
PUBLISHED_R = -0.59
PUBLISHED_AT = "60 patterns, studies/results/principle_fashion_mnist"


def detection_power(r: float, n: int, alpha: float = 0.05) -> float:
    """The chance that n patterns show a correlation of true size ``r`` at two-sided ``alpha``
    (Fisher's z: atanh(r) sqrt(n - 3) against the normal quantile)."""
    from scipy.stats import norm
    if n <= 3:
        return 0.0
    z = abs(math.atanh(r)) * math.sqrt(n - 3)
    return float(norm.sf(norm.isf(alpha / 2) - z) + norm.cdf(-norm.isf(alpha / 2) - z))


# Measured references for the brief-training caveat, by dataset (tests/test_published.py
# checks each against the published result it names).
FULL_TRAINING_ACCURACY = 0.863
FULL_TRAINING = {"fashion-mnist": (
    f"this project's fidelity study measured {FULL_TRAINING_ACCURACY:.3f} on Fashion-MNIST "
    f"after one epoch over all 50000 training images, for a single block of 15 layers, "
    f"studies/results/fidelity_fashion_mnist")}
