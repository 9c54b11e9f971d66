"""Samplers that choose whole patterns, not keys: uniform, and principle-guided ones.

Each trial, a sampler draws candidate patterns from the search space (random params decoded by
the space, so every candidate is valid at the budget), leaves out patterns already tried, picks
one, and answers the space's ``suggest_*`` calls with that candidate's params. So they run in
any study (``[sampler] name = "screen"`` or ``"prior"``), on any storage, with any workers.

- ``uniform``: an untried pattern drawn with equal chance from all of the space's (the honest
  baseline: ``random`` draws keys, which fall unevenly on patterns).
- ``screen``: the candidate with the best zero-cost score (default: the shortest mean backprop
  distance, ties broken by MBD). No training is spent on scoring.
- ``prior``: a Gaussian process on graph features (`search_spaces.features`) whose prior mean
  favours short distances, fit to the accuracies trained so far; the candidate with the highest
  expected improvement.
- ``tpe_features``, ``cmaes_features``: TPE or CMA-ES over the graph features instead of the
  space's keys (a pattern-level encoding: patterns with similar distances are neighbours).
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from search_spaces import Pattern, SearchSpace
from search_spaces.features import MEAN_DISTANCE, SCORES, features, screen_score
from search_spaces.spaces import FixedParams, RandomKeys

from ...errors import ConfigError
from .._optuna.api import trial_id
from .._optuna.reads import StudyReads

# The most patterns `prior`'s GP is fit to (its cost is cubic in them), and the most trials
# `tpe_features`' inner TPE study holds before it is rebuilt from its best and latest points
# (TPE's cost is linear in them): so neither grows with the study.
GP_POINTS = 500
INNER_TRIALS = 1000


class PatternSampler(optuna.samplers.BaseSampler):
    """Plans one pattern per trial from ``candidates`` random draws of ``space``."""

    def __init__(self, space: SearchSpace, seed: int | None = None, candidates: int = 256):
        self.space, self.candidates = space, candidates
        self.rng = np.random.default_rng(seed)
        self._plans: dict[int, dict[str, Any]] = {}
        self._decoded: dict[int, Pattern] = {}
        self._features: dict[str, np.ndarray] = {}
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        # What the study's trials have shown so far (see `history`).
        self._tried: set[str] = set()
        self._done: list[tuple[Pattern, float]] = []
        self._counted: set[int] = set()   # trial ids of finished trials in _tried and _done
        self._settled = 0                 # trials numbered below this are all counted

    def features_of(self, patterns: list[Pattern]) -> np.ndarray:
        """The patterns' graph features, one row each (computed once per pattern)."""
        for p in patterns:
            if p.hash not in self._features:
                self._features[p.hash] = features(p)
        return np.array([self._features[p.hash] for p in patterns])

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if trial.number not in self._plans:
            self._plans[trial.number] = self._plan(study)
        plan = self._plans[trial.number]
        if param_name in plan:
            return plan[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def pattern_of(self, trial: FrozenTrial) -> Pattern | None:
        """The pattern a finished trial's params decode to (None: params of another space)."""
        if trial.number not in self._decoded:
            try:
                self._decoded[trial.number] = self.space.suggest(FixedParams(trial.params))
            except (KeyError, ValueError):
                return None
        return self._decoded[trial.number]

    def history(self, study: optuna.Study) -> tuple[set[str], list[tuple[Pattern, float]]]:
        """The hashes of the patterns tried (trials with params, in any state) and the
        (pattern, accuracy) of the completed trials, in trial order. Read incrementally: a
        finished trial is looked at once, and the leading run of finished trials never again,
        so the cost follows the trials that are new or unfinished, not the study's size. On a
        database the queued (WAITING) trials are left out of the read: Optuna's cache would
        read every one again each time (28 s a trial with 100k queued)."""
        from_db = StudyReads(study).tried_since(self._settled)
        if from_db is None:
            every = study.get_trials(deepcopy=False)   # by number
            trials = every[bisect_left(every, self._settled, key=lambda t: t.number):]
            first_open = None   # the WAITING trials are among them: the prefix stops there
        else:
            trials, first_open = from_db
        unfinished: set[str] = set()
        for t in trials:
            if trial_id(t) in self._counted:
                continue
            pattern = self.pattern_of(t) if t.params else None
            if not t.state.is_finished():
                if pattern is not None:
                    unfinished.add(pattern.hash)
                continue
            self._counted.add(trial_id(t))
            self._decoded.pop(t.number, None)  # never decoded again
            if pattern is not None:
                self._tried.add(pattern.hash)
                if t.state == TrialState.COMPLETE and t.values:
                    self._done.append((pattern, t.values[0]))
        for t in trials:
            if trial_id(t) not in self._counted or (first_open is not None
                                                     and t.number >= first_open):
                break
            self._counted.discard(trial_id(t))   # below _settled: never looked at again
            self._settled = t.number + 1
        return self._tried | unfinished, self._done

    def _plan(self, study: optuna.Study) -> dict[str, Any]:
        tried, done = self.history(study)
        pool: dict[str, tuple[Pattern, dict[str, Any]]] = {}
        for _ in range(self.candidates):
            keys = RandomKeys(self.rng)
            pattern = self.space.suggest(keys)
            if pattern.hash not in tried:
                pool.setdefault(pattern.hash, (pattern, keys.params))
        if not pool:  # every candidate tried already: a random draw
            return {}
        patterns = [p for p, _ in pool.values()]
        best = int(np.argmax(self.scores(patterns, done)))
        return pool[patterns[best].hash][1]

    def scores(self, candidates: list[Pattern], done: list[tuple[Pattern, float]]) -> np.ndarray:
        """Higher is better; ``done``: (pattern, accuracy) of the completed trials."""
        raise NotImplementedError


class ScreenSampler(PatternSampler):
    """Zero-cost screen: the untried candidate with the best score (ties broken by the shorter
    mean distance, then MBD), no learning."""

    def __init__(self, space: SearchSpace, seed: int | None = None, candidates: int = 256,
                 score: str = "-mean_distance"):
        super().__init__(space, seed, candidates)
        self.score = screen_score(score)
        self._scored: dict[str, float] = {}

    def scores(self, candidates: list[Pattern], done: list[tuple[Pattern, float]]) -> np.ndarray:
        distance, mbd = SCORES["-mean_distance"], SCORES["-mbd"]
        for p in candidates:  # most candidates come back trial after trial: score them once
            if p.hash not in self._scored:
                self._scored[p.hash] = self.score(p) + 1e-6 * distance(p) + 1e-9 * mbd(p)
        return np.array([self._scored[p.hash] for p in candidates])


@dataclass
class _Runs:
    """A pattern's runs so far, added up: the sum of their accuracies and their count."""
    pattern: Pattern
    accuracy: float = 0.0
    runs: int = 0


class PriorSampler(PatternSampler):
    """Expected improvement under a GP on graph features, its prior mean linear in the mean
    backprop distance (slope fit to the data, never rewarding longer distances)."""

    def __init__(self, space: SearchSpace, seed: int | None = None, candidates: int = 256,
                 startup: int = 3):
        super().__init__(space, seed, candidates)
        self.startup = startup
        self._sums: dict[str, _Runs] = {}       # hash -> the pattern's runs so far
        self._summed = 0                        # entries of the history added up so far

    def scores(self, candidates: list[Pattern], done: list[tuple[Pattern, float]]) -> np.ndarray:
        xc = self.features_of(candidates)
        if len(done) < self.startup:  # the prior alone: shortest mean distance first
            return -xc[:, MEAN_DISTANCE]
        patterns, y, runs = self.gp_points(done)
        mu, sigma = gp_posterior(self.features_of(patterns), y, xc, runs)
        return expected_improvement(mu, sigma, y.max())

    def gp_points(self, done: list[tuple[Pattern, float]]
                  ) -> tuple[list[Pattern], np.ndarray, np.ndarray]:
        """What the GP is fit to: each pattern once, with its mean accuracy and run count; of
        more than :data:`GP_POINTS` patterns, the best half of them and a random draw of the
        rest. ``done`` only grows from call to call (the sampler's history): only its new
        entries are added up."""
        for p, accuracy in done[self._summed:]:
            total = self._sums.setdefault(p.hash, _Runs(p))
            total.accuracy += accuracy
            total.runs += 1
        self._summed = len(done)
        hashes = list(self._sums)
        mean = np.array([self._sums[h].accuracy / self._sums[h].runs for h in hashes])
        if len(hashes) > GP_POINTS:
            order = np.argsort(-mean, kind="stable")
            best, rest = order[:GP_POINTS // 2], order[GP_POINTS // 2:]
            keep = np.concatenate([best, self.rng.choice(rest, GP_POINTS - len(best),
                                                         replace=False)])
            hashes, mean = [hashes[k] for k in keep], mean[keep]
        return ([self._sums[h].pattern for h in hashes], mean,
                np.array([self._sums[h].runs for h in hashes], dtype=float))


class EmbeddedSampler(PatternSampler):
    """TPE or CMA-ES over an embedding of the patterns' graph features, not their keys: the
    inner sampler proposes a point in it and the nearest untried candidate is trained, so
    patterns with similar distances are neighbours to it. CMA-ES is told the results of the
    points it proposed; TPE learns where every trained pattern lies, other workers' too."""

    def __init__(self, space: SearchSpace, seed: int | None = None, candidates: int = 256,
                 inner: str = "tpe", dims: int = 3):
        super().__init__(space, seed, candidates)
        self.inner_name = inner
        make = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
                "cmaes": lambda: optuna.samplers.CmaEsSampler(
                    seed=seed, n_startup_trials=5, warn_independent_sampling=False)}[inner]
        self.inner = optuna.create_study(direction="maximize", sampler=make())
        self._make_inner = make
        self._asked: dict[str, optuna.Trial] = {}       # pattern hash -> inner trial
        self._told: set[str] = set()
        self._points: list[FrozenTrial] = []            # what TPE was told, in order
        # The embedding: the top principal components of the standardised features of a
        # sample of the space. Few dimensions keep the inner sampler's box mostly filled by
        # real patterns (in all ten, most of it is empty and the nearest pattern to a proposal
        # is an outlier).
        pool = [self.space.suggest(RandomKeys(self.rng)) for _ in range(4 * candidates)]
        x = self.features_of(pool)
        self.center, self.scale = x.mean(axis=0), x.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        _, _, vt = np.linalg.svd((x - self.center) / self.scale, full_matrices=False)
        self.axes = vt[:dims].T
        z = self._z(pool)
        self.low, self.high = z.min(axis=0) - 1e-9, z.max(axis=0) + 1e-9  # the inner's box
        self.dists: dict[str, BaseDistribution] = {
            f"pc{k}": FloatDistribution(float(lo), float(hi))
            for k, (lo, hi) in enumerate(zip(self.low, self.high))}

    def _z(self, patterns: list[Pattern]) -> np.ndarray:
        return ((self.features_of(patterns) - self.center) / self.scale) @ self.axes

    def scores(self, candidates: list[Pattern], done: list[tuple[Pattern, float]]) -> np.ndarray:
        for pattern, accuracy in done:
            if pattern.hash in self._told:
                continue
            self._told.add(pattern.hash)
            if self.inner_name == "cmaes":  # CMA-ES learns from the points it asked for
                if pattern.hash in self._asked:
                    self.inner.tell(self._asked[pattern.hash], accuracy)
                continue
            # TPE learns where the trained pattern really lies, whoever proposed it.
            z = np.clip(self._z([pattern])[0], self.low, self.high)
            self._points.append(optuna.trial.create_trial(
                params={k: float(v) for k, v in zip(self.dists, z)},
                distributions=self.dists, value=accuracy))
            self.inner.add_trial(self._points[-1])
        if self.inner_name == "tpe" and len(self.inner.get_trials(deepcopy=False)) > INNER_TRIALS:
            self._rebuild_inner()
        trial = self.inner.ask(self.dists)
        point = np.array([trial.params[k] for k in self.dists])
        score = -np.linalg.norm(self._z(candidates) - point, axis=1)
        if self.inner_name == "cmaes":
            self._asked[candidates[int(np.argmax(score))].hash] = trial
        else:
            self.inner.tell(trial, state=TrialState.FAIL)  # its point is replaced by the pattern's
        return score

    def _rebuild_inner(self) -> None:
        """A fresh inner TPE study told the best and the latest :data:`INNER_TRIALS` / 4
        points each (each ask also leaves a failed trial in it: rebuilt, it stays bounded)."""
        keep = INNER_TRIALS // 4
        best = sorted(range(len(self._points)), key=lambda k: -self._points[k].values[0])[:keep]
        latest = range(max(0, len(self._points) - keep), len(self._points))
        self._points = [self._points[k] for k in sorted(set(best) | set(latest))]
        self.inner = optuna.create_study(direction="maximize", sampler=self._make_inner())
        self.inner.add_trials(self._points)


class UniformSampler(PatternSampler):
    """Uniform over the space's patterns, without repeats: each trial an untried pattern drawn
    with equal chance (``random`` draws keys, and keys do not fall evenly on patterns). Needs a
    space that lists its patterns and encodes them (offsets with one block, per_block)."""

    def __init__(self, space: SearchSpace, seed: int | None = None):
        super().__init__(space, seed)
        patterns = space.all_patterns()
        if not patterns or space.params_of(patterns[0]) is None:
            raise ConfigError(f"sampler 'uniform' needs a space whose patterns can be listed and "
                              f"encoded (offsets with one block, per_block); "
                              f"{space.name} at layers {list(space.layers)} ({space.style}) "
                              f"cannot")
        self.patterns = patterns

    def _plan(self, study: optuna.Study) -> dict[str, Any]:
        tried, _ = self.history(study)
        untried = [p for p in self.patterns if p.hash not in tried]
        if not untried:  # every pattern tried: a random draw
            return {}
        pattern = untried[int(self.rng.integers(len(untried)))]
        params = self.space.params_of(pattern)
        if params is None:
            raise RuntimeError(f"uniform: the {self.space.name} space listed pattern "
                               f"{pattern.hash} but cannot encode it")
        return params


def gp_posterior(x: np.ndarray, y: np.ndarray, xq: np.ndarray, runs: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std at ``xq`` of a GP fit to (x, y). Features are standardised over
    all points; the prior mean is a + b * (-mean distance) with b >= 0 fit by least squares; an
    RBF kernel (median-distance length scale) with noise models the rest. ``runs``: how many
    runs each y is the mean of (default one each; its noise shrinks as 1 / runs)."""
    everything = np.vstack([x, xq])
    scale = everything.std(axis=0)
    scale[scale == 0] = 1.0
    z, zq = (x - everything.mean(axis=0)) / scale, (xq - everything.mean(axis=0)) / scale
    s, sq = -z[:, MEAN_DISTANCE], -zq[:, MEAN_DISTANCE]
    slope = max(0.0, float(np.polyfit(s, y, 1)[0])) if np.ptp(s) > 0 else 0.0
    offset = float(np.mean(y - slope * s))
    residual = y - (offset + slope * s)
    variance = max(float(residual.var()), 1e-6)

    def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0)

    d = sq_dists(z, z)
    length = float(np.sqrt(np.median(d[d > 0]))) if np.any(d > 0) else 1.0
    k = variance * np.exp(-d / (2 * length ** 2))
    kq = variance * np.exp(-sq_dists(zq, z) / (2 * length ** 2))
    noise = 0.5 * variance  # two seeds of one pattern differ by about this much
    chol = np.linalg.cholesky(k + noise * np.diag(1 / (np.ones(len(y)) if runs is None
                                                         else runs)))
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, residual))
    mu = offset + slope * sq + kq @ alpha
    v = np.linalg.solve(chol, kq.T)
    sigma = np.sqrt(np.maximum(variance - (v ** 2).sum(axis=0), 1e-12))
    return mu, sigma


def expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float) -> np.ndarray:
    from math import erf, sqrt

    z = (mu - best) / sigma
    cdf = 0.5 * (1 + np.vectorize(erf)(z / sqrt(2)))
    pdf = np.exp(-0.5 * z ** 2) / np.sqrt(2 * np.pi)
    return (mu - best) * cdf + sigma * pdf
