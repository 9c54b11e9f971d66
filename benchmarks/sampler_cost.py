"""Each sampler's cost per trial as a study grows: ask, the space's suggestions and tell, on an
in-memory study already holding N completed trials (random patterns with random accuracies),
so the time is the sampler's and Optuna's, not a database's. The space is `offsets` at L = 40
(Log-DenseNet's connection count), large enough that N trials do not exhaust it (the
quickstart's, at L = 24, has 9,543 patterns: 100,000 random trials try them all, and the
guided samplers then have nothing left to score); `uniform`, which needs a space it can list,
runs on the quickstart's. The first trial after the N is timed apart: the guided samplers
decode every earlier trial's pattern once, then remember it. The samplers take turns on one
study per space (each adds its few timed trials to it).

    python benchmarks/sampler_cost.py                              # 1k, 10k; every sampler
    python benchmarks/sampler_cost.py --sizes 100000 --samplers random screen prior
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, create_trial

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.search.config import config_from_dict  # noqa: E402
from nas.search.strategy.samplers import make_sampler  # noqa: E402
from search_spaces.spaces import RandomKeys  # noqa: E402

SAMPLERS = ("random", "tpe", "uniform", "screen", "prior", "tpe_features", "cmaes_features",
            "cmaes")


class Recorded(RandomKeys):
    """Random keys that also note each key's distribution (what a trial would store)."""

    def __init__(self, rng: np.random.Generator):
        super().__init__(rng)
        self.distributions: dict[str, BaseDistribution] = {}

    def suggest_float(self, name: str, low: float, high: float) -> float:
        self.distributions[name] = FloatDistribution(low, high)
        return super().suggest_float(name, low, high)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.distributions[name] = CategoricalDistribution(choices)
        return super().suggest_categorical(name, choices)


def history(space: Any, n: int, seed: int = 0) -> list[FrozenTrial]:
    """``n`` completed trials of random patterns of ``space`` with random accuracies."""
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n):
        keys = Recorded(rng)
        space.suggest(keys)
        trials.append(create_trial(params=keys.params, distributions=keys.distributions,
                                   value=float(rng.uniform(0.5, 0.7))))
    return trials


def space_of(name: str) -> dict[str, Any]:
    """The search space sampler ``name`` is timed on (see the module's docstring)."""
    return {"name": "offsets", "layers": [24 if name == "uniform" else 40]}


def cost(name: str, storage: optuna.storages.BaseStorage, repeats: int) -> tuple[float, float]:
    """(seconds of the first trial, median seconds of the next ``repeats``) of sampler
    ``name`` on the study in ``storage`` (each sampler adds its few trials to it)."""
    cfg = config_from_dict({"name": "cost", "search_space": space_of(name),
                            "sampler": {"name": name}})
    space = cfg.search_space.build()
    study = optuna.load_study(study_name="cost", storage=storage,
                              sampler=make_sampler(cfg.search_space.build(), cfg.sampler, 0))
    rng = np.random.default_rng(1)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, float(rng.uniform(0.5, 0.7)))
        times.append(time.perf_counter() - t)
    return times[0], statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    ap.add_argument("--repeats", type=int, default=5, help="timed trials after the first")
    args = ap.parse_args()
    rows: dict[str, dict[int, tuple[float, float]]] = {name: {} for name in args.samplers}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for n in args.sizes:
        storages: dict[str, optuna.storages.BaseStorage] = {}
        for name in args.samplers:
            space = space_of(name)
            key = json.dumps(space)
            if key not in storages:
                storages[key] = optuna.storages.InMemoryStorage()
                built = config_from_dict({"name": "cost", "search_space": space})
                optuna.create_study(study_name="cost", storage=storages[key],
                                    direction="maximize").add_trials(
                    history(built.search_space.build(), n))
            rows[name][n] = cost(name, storages[key], args.repeats)
            first, then = rows[name][n]
            print(f"{name} at {n} trials: first {first * 1e3:.0f} ms, then {then * 1e3:.1f} ms "
                  f"median", flush=True)
    print("\n| sampler | " + " | ".join(f"{n:,} trials: first / then" for n in args.sizes)
          + " |")
    print("|---|" + "---|" * len(args.sizes))
    for name, by_size in rows.items():
        print(f"| {name} | " + " | ".join(f"{by_size[n][0] * 1e3:.0f} / {by_size[n][1] * 1e3:.1f}"
                                          " ms" for n in args.sizes) + " |")


if __name__ == "__main__":
    main()
