"""Samplers and pruners by name: the `[sampler]` and `[pruner]` config sections and the
registries they choose from."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import optuna

from search_spaces import PatternError, Registry, SearchSpace
from search_spaces.features import screen_score

from ...errors import ConfigError, UserError
from ...settings import require
from .._optuna.api import experimental_ok


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "tpe"
    # nsga2: the second objective, minimised alongside maximised accuracy
    second_objective: Literal["connections", "flops", "params"] = "flops"
    # screen: the zero-cost score it maximises (search_spaces.features.screen_score)
    score: str = "-mean_distance"

    def __post_init__(self):
        require(self.name in SAMPLERS, "name", SAMPLERS.unknown(self.name))
        try:
            screen_score(self.score)
        except PatternError as e:
            raise UserError(f"score: {e}") from None


@dataclass(frozen=True)
class PrunerConfig:
    name: str = "none"
    warmup_epochs: int = 1

    def __post_init__(self):
        require(self.name in PRUNERS, "name", PRUNERS.unknown(self.name))
        require(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")


# (the search space, the [sampler] section, the seed) and (the [pruner] section, the training
# epochs: None when training counts steps)
SamplerFactory = Callable[[SearchSpace, SamplerConfig, int], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[PrunerConfig, int | None], optuna.pruners.BasePruner]

SAMPLERS: Registry[SamplerFactory] = Registry("sampler", ConfigError)
PRUNERS: Registry[PrunerFactory] = Registry("pruner", ConfigError)

SAMPLERS.add("tpe", lambda space, settings, seed: optuna.samplers.TPESampler(
    seed=seed, constant_liar=True, multivariate=True))
SAMPLERS.add("random", lambda space, settings, seed: optuna.samplers.RandomSampler(seed=seed))
SAMPLERS.add("nsga2", lambda space, settings, seed: optuna.samplers.NSGAIISampler(seed=seed))
SAMPLERS.add("cmaes", lambda space, settings, seed: optuna.samplers.CmaEsSampler(
    seed=seed, warn_independent_sampling=False))


def _guided(kind: str) -> SamplerFactory:
    def make(space: SearchSpace, settings: SamplerConfig,
             seed: int) -> optuna.samplers.BaseSampler:
        from .guided import EmbeddedSampler, PriorSampler, ScreenSampler, UniformSampler
        if kind.endswith("_features"):
            return EmbeddedSampler(space, seed, inner=kind.removesuffix("_features"))
        if kind == "screen":
            return ScreenSampler(space, seed, score=settings.score)
        return {"prior": PriorSampler, "uniform": UniformSampler}[kind](space, seed)
    return make


# Samplers over whole patterns (nas/search/strategy/guided.py): uniform, and principle-guided
# ones.
for _name in ("uniform", "screen", "prior", "tpe_features", "cmaes_features"):
    SAMPLERS.add(_name, _guided(_name))

# What `skipnas bench replay` compares unless told otherwise: every single-objective sampler.
# screen:-reads_of_node0 ranked the reliable benchmark best (proxies_fashion_mnist/bench_v2).
STRATEGIES = ("uniform", "random", "tpe", "cmaes", "screen", "screen:-reads_of_node0", "prior",
              "tpe_features", "cmaes_features")

PRUNERS.add("none", lambda settings, epochs: optuna.pruners.NopPruner())
PRUNERS.add("median", lambda settings, epochs: optuna.pruners.MedianPruner(
    n_warmup_steps=settings.warmup_epochs))
PRUNERS.add("hyperband", lambda settings, epochs: optuna.pruners.HyperbandPruner(
    min_resource=1, max_resource=epochs or "auto"))


def make_sampler(space: SearchSpace, settings: SamplerConfig,
                 seed: int) -> optuna.samplers.BaseSampler:
    """The sampler ``settings`` names, over ``space``, seeded with ``seed``."""
    with experimental_ok():
        return SAMPLERS[settings.name](space, settings, seed)


def make_pruner(settings: PrunerConfig, epochs: int | None) -> optuna.pruners.BasePruner:
    """The pruner ``settings`` names (``epochs``: the training's, None when it counts
    steps)."""
    return PRUNERS[settings.name](settings, epochs)
