"""The fidelity study: one set of patterns trained at several fidelities, several seeds each,
as trials of one study (heartbeats, requeue, resume and exact counts as any slot).

Each level trains seeds of its own (:meth:`FidelityConfig.level_seeds`): a level that reused
the reference's seeds would start from the same initial weights, and its ranking would agree
with the reference's by that shared noise too. The reference is scored on the test split, which
no level validates on, for the same reason.

`start_fidelity` queues one slot per (pattern, level, seed) that the study does not hold yet,
seed-major (every pattern and level at its first seed before any at its second), so a study cut
short still compares every level. `fidelity_table` reads the finished trials back by level;
:mod:`nas.results.fidelity_summary` turns that into the report.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

import numpy as np
import optuna
from optuna.trial import TrialState

from search_spaces import Pattern, distance_stats
from search_spaces.spaces import sample_patterns

from ...errors import UserError
from .._optuna.api import storage_of
from ..config import (
    BaselinesConfig,
    BenchConfig,
    Fidelity,
    FidelityConfig,
    FidelityLevel,
    NoiseConfig,
    StudyConfig,
    config_summary,
)
from ..record import SlotKind, TrialRecord
from ..slots import baseline_pattern, counts_as_slot, enqueue_slots
from ..storage.locks import exclusive
from .bench import load_bench
from .study import create_study

SPREAD_CANDIDATES = 2000  # patterns sampled from a space too large to list, for `spread`


@dataclass(frozen=True)
class Chosen:
    """A pattern of the fidelity study and why it is there: a template's name, "bench #N"
    (the benchmark's N-th best by mean) or "spread"."""
    label: str
    pattern: Pattern


def fidelity_patterns(cfg: StudyConfig) -> list[Chosen]:
    """The patterns a fidelity config trains: its templates, the benchmark's best, then
    ``spread`` more at evenly spaced quantiles of mean distance (each pattern once)."""
    f, space = cfg.fidelity, cfg.search_space.build()
    chosen: dict[str, Chosen] = {}

    def add(label: str, pattern: Pattern) -> None:
        chosen.setdefault(pattern.hash, Chosen(label, pattern))

    for template in f.templates:
        add(template, baseline_pattern(space, template))
    if f.bench_best:
        bench = load_bench(f.bench)
        for rank, entry in enumerate(bench.ranked()[:f.bench_best], start=1):
            if entry.pattern.num_layers != space.layers:
                raise UserError(f"fidelity.bench: {f.bench} holds patterns of layers "
                                f"{list(entry.pattern.num_layers)}; this space has "
                                f"{list(space.layers)}")
            add(f"bench #{rank}", entry.pattern)
    if f.spread:
        pool = space.all_patterns() or sample_patterns(space, SPREAD_CANDIDATES, f.spread_seed,
                                                       exact=False)
        pool = sorted((p for p in pool if p.hash not in chosen),
                      key=lambda p: (distance_stats(p).mean, p.hash))
        if len(pool) < f.spread:
            raise UserError(f"fidelity.spread: the space has only {len(pool)} more patterns")
        for i in np.unique(np.round(np.linspace(0, len(pool) - 1, f.spread)).astype(int)):
            add("spread", pool[i])
    return list(chosen.values())


def fidelity_slots(cfg: StudyConfig) -> list[TrialRecord]:
    """Every slot of the fidelity study, seed-major: for each k, every pattern at every level
    that trains k + 1 seeds, with that level's k-th seed."""
    levels, patterns = cfg.fidelity_levels, fidelity_patterns(cfg)
    seeds = [cfg.fidelity.level_seeds(index, cfg.training.seed) for index in range(len(levels))]
    slots = []
    for k in range(cfg.fidelity.top_seeds):
        for c in patterns:
            for index, (_, fidelity) in enumerate(levels):
                if k < len(seeds[index]):
                    slots.append(TrialRecord(slot=SlotKind.FIDELITY, pattern=c.pattern.to_dict(),
                                             hash=c.pattern.hash, seed=seeds[index][k],
                                             baseline=c.label if c.label in cfg.fidelity.templates
                                             else None, fidelity=fidelity.to_dict()))
    return slots


def _slot_key(r: TrialRecord) -> tuple[str | None, int | None, Fidelity | None]:
    return r.hash, r.seed, Fidelity.from_dict(r.fidelity) if r.fidelity else None


def check_fidelity_config(cfg: StudyConfig) -> None:
    """What a fidelity study needs beyond a valid config, checked before anything is written:
    levels, no search trials beside it, and at least 3 distinct patterns (a rank correlation
    of fewer means nothing)."""
    if not cfg.fidelity.enabled:
        raise UserError(f"{cfg.name}: the config has no [fidelity] levels")
    if cfg.trials:
        raise UserError(f"{cfg.name}: a fidelity study trains no search trials (trials = "
                        f"{cfg.trials}); set trials = 0, or give the search its own study")
    found = len(fidelity_patterns(cfg))
    if found < 3:
        raise UserError(f"{cfg.name}: fidelity: {found} distinct patterns; add templates, "
                        f"bench_best or spread for at least 3")


def start_fidelity(cfg: StudyConfig) -> tuple[optuna.Study, int]:
    """Create (or load) the study and queue its missing fidelity slots; returns the study and
    how many were queued."""
    check_fidelity_config(cfg)
    wanted = fidelity_slots(cfg)
    study = create_study(cfg)
    with exclusive(cfg.storage_url, storage_of(study), cfg.name):  # concurrent calls: once
        have = {_slot_key(TrialRecord.from_trial(t)) for t in study.get_trials(deepcopy=False)
                if counts_as_slot(t) and TrialRecord.from_trial(t).kind == SlotKind.FIDELITY}
        missing = [s for s in wanted if _slot_key(s) not in have]
        enqueue_slots(study, missing)
    return study, len(missing)


@dataclass(frozen=True)
class FidelityRun:
    """One finished fidelity trial."""
    level: str
    hash: str
    seed: int
    accuracy: float       # on the validation images
    seconds: float        # the trial's wall time: building, measuring, training, evaluating
    test_accuracy: float | None = None   # at a level scored on the test split (the reference)


@dataclass(frozen=True)
class FidelityTable:
    """The fidelity study's finished trials, with the levels and patterns they belong to."""
    levels: tuple[tuple[str, Fidelity], ...]   # cheapest first; the last is the reference
    patterns: tuple[Chosen, ...]
    runs: tuple[FidelityRun, ...]
    pending: int                               # slots queued or running

    def scored_on_test(self, level: str) -> bool:
        """Whether ``level`` is scored on the test split (the reference) or validation."""
        return dict(self.levels)[level].eval_test

    def accuracies(self, level: str) -> dict[str, dict[int, float]]:
        """Accuracy by pattern hash and seed at ``level``, on the split it is scored on."""
        test = self.scored_on_test(level)
        out: dict[str, dict[int, float]] = {}
        for r in self.runs:
            if r.level == level:
                score = r.test_accuracy if test else r.accuracy
                if score is None:  # only a storage edited, or written by another program
                    raise UserError(f"the {level} run of pattern {r.hash}, seed {r.seed}, has "
                                    f"no test accuracy, though {level} is scored on the test "
                                    f"split")
                out.setdefault(r.hash, {})[r.seed] = score
        return out


def fidelity_table(study: optuna.Study, cfg: StudyConfig) -> FidelityTable:
    """Read the study's completed fidelity trials by level (a trial at a fidelity the config
    does not list is left out: the config's check against the study refuses other levels)."""
    by_fidelity = {f: name for name, f in cfg.fidelity_levels}
    runs, pending = [], 0
    for t in study.get_trials(deepcopy=False):
        r = TrialRecord.from_trial(t)
        if r.kind != SlotKind.FIDELITY:
            continue
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            pending += 1
        level = by_fidelity.get(Fidelity.from_dict(r.fidelity)) if r.fidelity else None
        if t.state == TrialState.COMPLETE and level is not None and r.hash and t.values:
            assert r.seed is not None and t.datetime_start and t.datetime_complete
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
            runs.append(FidelityRun(level, r.hash, r.seed, t.values[0],
                                    float("nan") if r.is_reused else seconds, r.test_accuracy))
    return FidelityTable(tuple(cfg.fidelity_levels), tuple(fidelity_patterns(cfg)), tuple(runs),
                         pending)


def calibration_levels(search: Fidelity, available: int, steps: int = 3) -> list[FidelityLevel]:
    """A ladder of ``steps`` levels from the search's fidelity up: training images x4 per rung
    until the whole split (``available`` images) is reached, then epochs x2 per rung."""
    levels = [FidelityLevel("search")]
    base = search.train_size if search.train_size is not None and \
        search.train_size < available else 0  # 0: the search trains on the whole split
    size, epochs = base, search.epochs or 1  # a search of steps: epochs of the whole split
    while len(levels) < steps:
        if size:
            size = size * 4 if size * 4 < available else 0
            levels.append(FidelityLevel(f"images_x{size // base}", train_size=size) if size
                          else FidelityLevel("all_images", train_size="all"))
        else:
            epochs *= 2
            name = f"epochs_x{epochs // (search.epochs or 1)}"
            levels.append(FidelityLevel(f"all_images_{name}", epochs=epochs, train_size="all")
                          if base else FidelityLevel(name, epochs=epochs))
    return levels


def calibration_config(cfg: StudyConfig, patterns: int, seeds: int,
                       available: int) -> StudyConfig:
    """The fidelity study `skipnas calibrate` runs for ``cfg``: log and ``patterns - 1`` more
    of its space spanning the mean-distance range, ``seeds`` seeds of its own at each of
    :func:`calibration_levels` (the last scored on the test split), in the same storage as
    ``cfg``'s study."""
    fidelity = FidelityConfig(levels=tuple(calibration_levels(cfg.search_fidelity, available)),
                              seeds=seeds, top_seeds=seeds, templates=("log",),
                              spread=patterns - 1, target=cfg.fidelity.target)
    calibrate = replace(cfg, trials=0, baselines=BaselinesConfig(), bench=BenchConfig(),
                        noise=NoiseConfig(), fidelity=fidelity, storage=cfg.storage_url)
    # Named after its settings: a changed config calibrates afresh, the same one resumes.
    summary = json.dumps(config_summary(calibrate, calibrate.search_space.build()),
                         sort_keys=True)
    digest = hashlib.sha256(summary.encode()).hexdigest()[:8]
    return replace(calibrate, name=f"{cfg.name[:40]}_calibrate_{digest}")
