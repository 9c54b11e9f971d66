"""Optuna-native use: skipnas' search spaces and trial record inside a user's own objective.

A user's objective draws a pattern with :func:`suggest_pattern`, trains it with its own loop
and stores what it trained with :func:`record_trial`; the study is then read by `skipnas
analyze`, `report`, `dashboard` and `export` like one that skipnas' workers filled.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import BaseTrial

from search_spaces import Pattern, SearchSpace

from ...engine.run_config import ArchConfig
from ...engine.spec import METRIC_KEYS, PatternSpec, make_spec
from ...errors import UserError
from ...settings import from_dict
from .._optuna.api import experimental_ok, params_in_one_transaction
from ..config import CONFIG_ATTR, VAL_ACCURACY, SpaceConfig, stored_config
from ..record import record

if TYPE_CHECKING:
    import torch

Space = SearchSpace | SpaceConfig | Mapping[str, Any]


def suggest_pattern(trial: BaseTrial, space: Space) -> Pattern:
    """The pattern ``trial`` draws from ``space``: a :class:`SearchSpace`, or a study config's
    ``[search_space]`` table (as a dict, or its :class:`SpaceConfig`).

    On a live trial the study is stamped, once, with the space (its ``config`` attr, as
    `skipnas study start` stores it), which the readers take its budget, layers and style
    from; a study stamped with another space, or one that minimises its first objective
    (skipnas maximises validation accuracy), is refused."""
    space = _space(space)
    if not isinstance(trial, optuna.Trial):  # FixedTrial and the like: no study to stamp
        return space.suggest(trial)
    _stamp(trial.study, space)
    with params_in_one_transaction(trial):
        return space.suggest(trial)


def record_trial(trial: optuna.Trial, trained: PatternSpec | Pattern, *, seed: int,
                 arch: ArchConfig | None = None, train_seconds: float | None = None,
                 val_curve: Sequence[float] | None = None,
                 loss_curve: Sequence[float] | None = None,
                 device: str | torch.device | None = None) -> PatternSpec:
    """Store the record of the pattern ``trial`` trained (its spec, or the pattern with the
    ``arch`` its network was built with) in one write: the spec, hash, connections, MBD,
    mean distance, params, FLOPs, style, the training ``seed`` (runs of one pattern with
    several seeds measure the noise), and, where given, the train time, per-epoch validation
    accuracies and losses, and device. The objective returns the validation accuracy.
    Returns the spec as recorded."""
    if isinstance(trained, Pattern):
        if arch is None:
            raise UserError("record_trial: a Pattern needs arch= (the ArchConfig its network "
                            "was built with) to measure its params and FLOPs")
        spec = make_spec(trained, arch)
    elif arch is not None:
        raise UserError("record_trial: arch= goes with a Pattern; a PatternSpec carries its own")
    else:
        spec = trained
    spec = replace(spec, origin={**spec.origin, "study": trial.study.study_name,
                                 "trial": trial.number, "seed": seed})
    record(trial, spec=spec.to_dict(), hash=spec.hash, seed=seed, style=spec.pattern.style,
           train_seconds=train_seconds, device=None if device is None else str(device),
           val_curve=None if val_curve is None else [float(v) for v in val_curve],
           loss_curve=None if loss_curve is None else [float(v) for v in loss_curve],
           **{k: spec.metrics[k] for k in METRIC_KEYS})
    return spec


def _space(space: Space) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        space = from_dict(SpaceConfig, dict(space), "search_space")
    return _built(space)


@functools.lru_cache(maxsize=8)
def _built(cfg: SpaceConfig) -> SearchSpace:
    # By value: an objective that passes the same table each trial builds the space once
    # (a v1/v2 offsets space costs one pattern per offset).
    return cfg.build()


def _stamp(study: optuna.Study, space: SearchSpace) -> None:
    stored = stored_config(study)
    if stored is None:
        if study.directions[0] != optuna.study.StudyDirection.MAXIMIZE:
            raise UserError(f"study {study.study_name!r} minimises its first objective; "
                            f"skipnas reads it as validation accuracy: create the study with "
                            f"direction='maximize'")
        study.set_user_attr(CONFIG_ATTR, {"search_space": space.describe()})
        if study.metric_names is None and len(study.directions) == 1:
            with experimental_ok():
                study.set_metric_names([VAL_ACCURACY])
    elif stored.get("search_space") != space.describe():
        raise UserError(f"study {study.study_name!r} holds patterns of the search space "
                        f"{stored.get('search_space')}, not {space.describe()}: use another "
                        f"study name")
