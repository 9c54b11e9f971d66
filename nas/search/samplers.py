"""Samplers and pruners by name: the registries that `[sampler]` and `[pruner]` choose from."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

from search_spaces import Registry

from ..errors import ConfigError
from ._optuna.api import experimental_ok

if TYPE_CHECKING:
    from .config import StudyConfig

SamplerFactory = Callable[["StudyConfig", int], optuna.samplers.BaseSampler]  # (config, seed)
PrunerFactory = Callable[["StudyConfig"], optuna.pruners.BasePruner]

SAMPLERS: Registry[SamplerFactory] = Registry("sampler", ConfigError)
PRUNERS: Registry[PrunerFactory] = Registry("pruner", ConfigError)

SAMPLERS.add("tpe", lambda cfg, seed: optuna.samplers.TPESampler(
    seed=seed, constant_liar=True, multivariate=True))
SAMPLERS.add("random", lambda cfg, seed: optuna.samplers.RandomSampler(seed=seed))
SAMPLERS.add("nsga2", lambda cfg, seed: optuna.samplers.NSGAIISampler(seed=seed))
SAMPLERS.add("cmaes", lambda cfg, seed: optuna.samplers.CmaEsSampler(
    seed=seed, warn_independent_sampling=False))


def _guided(kind: str) -> SamplerFactory:
    def make(cfg: "StudyConfig", seed: int) -> optuna.samplers.BaseSampler:
        from .guided import EmbeddedSampler, PriorSampler, ScreenSampler, UniformSampler
        space = cfg.search_space.build()
        if kind.endswith("_features"):
            return EmbeddedSampler(space, seed, inner=kind.removesuffix("_features"))
        if kind == "screen":
            return ScreenSampler(space, seed, score=cfg.sampler.score)
        return {"prior": PriorSampler, "uniform": UniformSampler}[kind](space, seed)
    return make


# Samplers over whole patterns (nas/search/guided.py): uniform, and principle-guided ones.
for _name in ("uniform", "screen", "prior", "tpe_features", "cmaes_features"):
    SAMPLERS.add(_name, _guided(_name))

# What `skipnas bench replay` compares unless told otherwise: every single-objective sampler.
# screen:-reads_of_node0 ranked the reliable benchmark best (proxies_fashion_mnist/bench_v2).
STRATEGIES = ("uniform", "random", "tpe", "cmaes", "screen", "screen:-reads_of_node0", "prior",
              "tpe_features", "cmaes_features")

PRUNERS.add("none", lambda cfg: optuna.pruners.NopPruner())
PRUNERS.add("median", lambda cfg: optuna.pruners.MedianPruner(
    n_warmup_steps=cfg.pruner.warmup_epochs))
PRUNERS.add("hyperband", lambda cfg: optuna.pruners.HyperbandPruner(
    min_resource=1, max_resource=cfg.training.epochs or "auto"))


def make_sampler(cfg: "StudyConfig", seed: int) -> optuna.samplers.BaseSampler:
    with experimental_ok():
        return SAMPLERS[cfg.sampler.name](cfg, seed)


def make_pruner(cfg: "StudyConfig") -> optuna.pruners.BasePruner:
    return PRUNERS[cfg.pruner.name](cfg)
