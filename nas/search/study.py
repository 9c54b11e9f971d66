"""Optuna studies over budgeted pattern spaces: create or resume, the best trial, status.

A study holds exactly the trials its config asks for: `create_study` enqueues one WAITING trial
per missing slot (search trials and baseline template runs), and workers only ever claim WAITING
trials. A killed worker's trial goes stale (no heartbeat), is marked FAIL and its slot queued
again (`liveness`); an interrupted one is marked FAIL "interrupted" and queued again at once. So
the study still ends with exactly the configured number of finished trials.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from search_spaces import Pattern, PatternError, SearchSpace, budgeted_pattern, template_pattern
from search_spaces.spaces import sample_patterns

from ..errors import UserError
from ..settings import to_dict
from .config import Fidelity, StudyConfig, check_study_size
from .evidence import Evidence, Recorded, evidence, recorded
from .optuna_api import experimental_ok
from .queue import enqueue
from .reads import StudyReads, ensure_indexes
from .record import OLD_STYLE, QUEUED_FIELDS, SlotKind, TrialRecord
from .samplers import make_pruner, make_sampler
from .snapshot import gc_paused, load_snapshot, snapshot_source
from .storage import exclusive, mask_url, open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
CONFIG_ATTR = "config"  # the study user attr that holds config_summary()


BaselineKey = tuple[str, int, str, str, str]  # (template, seed, style, budget mode, output)


def baseline_slots(cfg: StudyConfig) -> list[TrialRecord]:
    """The baseline trials a config asks for: each template once per style, budget mode, block
    output convention and seed."""
    b = cfg.baselines
    return [TrialRecord(baseline=t, seed=s, style=st, budget_mode=m, block_output=o)
            for t in b.templates for st in b.styles or (cfg.search_space.style,)
            for m in b.budgets for o in b.block_outputs for s in b.seeds]


def bench_patterns(cfg: StudyConfig) -> list[Pattern]:
    """The patterns a benchmark config trains: all of the space's, or its seeded sample."""
    space, bench = cfg.search_space.build(), cfg.bench
    if bench.patterns is None:
        patterns = space.all_patterns()
        if patterns is None:
            raise UserError(f"bench: the {space.name} space at layers {list(space.layers)} "
                            f"({space.style}) is too large to list; set bench.patterns = N to "
                            f"train a seeded sample of N patterns")
        return patterns
    try:
        return sample_patterns(space, bench.patterns, bench.sample_seed)
    except PatternError as e:
        raise UserError(f"bench.patterns: {e}") from None


def bench_slots(cfg: StudyConfig) -> list[TrialRecord]:
    """The benchmark trials a config asks for: each pattern once per seed, seed-major (a build
    cut short has every pattern at its first seeds), none unless ``[bench]`` names seeds."""
    if not cfg.bench.enabled:
        return []
    patterns = bench_patterns(cfg)
    return [TrialRecord(slot="bench", pattern=p.to_dict(), hash=p.hash, seed=s)
            for s in cfg.bench.seeds for p in patterns]


def noise_slot(cfg: StudyConfig) -> TrialRecord:
    """A noise slot: a completed search pattern (chosen when it runs) at the next seed."""
    return TrialRecord(slot=SlotKind.NOISE, seed=(cfg.training.seed + 1) % 2 ** 32)


def baseline_key(r: TrialRecord, space_style: str) -> BaselineKey:
    """A baseline slot's identity (old slots' defaults filled in by the record)."""
    assert r.baseline is not None and r.seed is not None
    return (r.baseline, r.seed, r.style_in(space_style), r.budget, r.output)


def baseline_pattern(space: SearchSpace, template: str, style: str | None = None,
                     budget_mode: str | None = None, block_output: str | None = None) -> Pattern:
    """A baseline template in ``style`` (default: the space's) under the block output
    convention (default: the template's own). Exact budget mode: at the study budget (in
    another style or convention: at log's count in that style and convention) where the template
    can meet it, else at its own count (dense and chain as references). Authors' mode: at its
    own count."""
    style, output = style or space.style, block_output or "template"
    if budget_mode == "authors":
        return template_pattern(template, space.layers, style=style, output=output)
    budget = space.budget if (style, output) == (space.style, "template") else \
        template_pattern("log", space.layers, style=style, output=output).connections
    try:
        return budgeted_pattern(template, space.layers, budget, style, output)
    except PatternError:
        return template_pattern(template, space.layers, style=style, output=output)


def counts_as_slot(t: FrozenTrial) -> bool:
    """Trials that fill a slot: all but failures whose slot was queued again (stale trials have
    no reason; interrupted ones are marked requeued) or lost (too many retries)."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING):
        return True
    r = TrialRecord.from_trial(t)
    return t.state == TrialState.FAIL and r.fail_reason is not None and not r.requeued


def create_study(cfg: StudyConfig, seed: int | None = None,
                 storage: optuna.storages.BaseStorage | None = None,
                 progress: bool = False) -> optuna.Study:
    """Create the study (or load it) and enqueue the trials still missing from the config
    (``progress``: a bar while a large queue is written)."""
    check_study_size(cfg)
    storage = storage or open_storage(cfg.storage_url)
    directions: list[Literal["maximize", "minimize"]] = (
        ["maximize", "minimize"] if cfg.multi_objective else ["maximize"])
    with exclusive(cfg.storage_url, storage, cfg.name):  # concurrent starts queue slots once
        ensure_indexes(storage)
        study = optuna.create_study(study_name=cfg.name, storage=storage, load_if_exists=True,
                                    directions=directions,
                                    sampler=make_sampler(cfg, cfg.seed if seed is None else seed),
                                    pruner=make_pruner(cfg))
        if [d.name.lower() for d in study.directions] != directions:
            raise UserError(f"study {cfg.name!r} in {mask_url(cfg.storage_url)} has directions "
                            f"{[d.name.lower() for d in study.directions]}, "
                            f"the config asks {directions}")
        if stored_config(study) is None:
            study.set_user_attr(CONFIG_ATTR, config_summary(cfg, cfg.search_space.build()))
        check_config(study, cfg)
        if study.metric_names != cfg.metric_names:  # studies made before names were stored
            with experimental_ok():
                study.set_metric_names(cfg.metric_names)
        _enqueue_missing(study, cfg, progress)
    return study


# Settings that may differ between the machines that share a study, and between runs of it
# (fidelity.target judges the report only; studies made before it was left out store it).
PER_MACHINE = ("training.device", "training.compile", "training.threads", "data.root")
PER_RUN = ("fidelity.target",)
# Keys added to the stored config after studies were made, with the value those studies ran.
ADDED_LATER = {"sampler.score": "-mean_distance", "data.image_size": None,
               "architecture.stem": "conv"}


def check_config(study: optuna.Study, cfg: StudyConfig) -> None:
    """Refuse a config whose settings differ from those the study was made with, naming
    every differing key (a worker with other settings would fill the study with other
    trials)."""
    stored = stored_config(study) or {}
    wanted = config_summary(cfg, cfg.search_space.build())

    def flat(summary: dict[str, Any]) -> dict[str, Any]:
        return {f"{section}.{key}": value for section, table in summary.items()
                for key, value in table.items()}

    a, b = {**ADDED_LATER, **flat(stored)}, flat(wanted)
    differ = [k for k in sorted(set(a) | set(b))
              if k not in PER_MACHINE + PER_RUN and a.get(k) != b.get(k)]
    if differ:
        shown = "; ".join(f"{k} is {a.get(k)!r} in the study, {b.get(k)!r} here"
                          for k in differ[:4])
        more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
        raise UserError(f"study {cfg.name!r} in {mask_url(cfg.storage_url)} was made with other "
                        f"settings: {shown}{more}. Use its config, or another study name.")


# What a slot's count reads of every trial: its queued fields and whether it still counts.
SLOT_FIELDS = tuple(sorted({k for fields in QUEUED_FIELDS.values() for k in fields}
                           | {"fail_reason", "requeued"}))


def _enqueue_missing(study: optuna.Study, cfg: StudyConfig, progress: bool) -> None:
    every = StudyReads(study).trials(list(TrialState), SLOT_FIELDS)
    slots = [TrialRecord.from_trial(t) for t in every if counts_as_slot(t)]
    style = cfg.search_space.style
    missing = []
    have_baselines = [baseline_key(r, style) for r in slots if r.is_baseline]
    for wanted in baseline_slots(cfg):
        if baseline_key(wanted, style) in have_baselines:
            have_baselines.remove(baseline_key(wanted, style))
        else:
            missing.append(wanted)
    have_bench = {(r.hash, r.seed) for r in slots if r.kind == SlotKind.BENCH}
    missing += [w for w in bench_slots(cfg) if (w.hash, w.seed) not in have_bench]
    search = sum(1 for r in slots if r.kind == SlotKind.SEARCH)
    missing += [TrialRecord(slot=SlotKind.SEARCH)] * max(0, cfg.trials - search)
    noise = sum(1 for r in slots if r.kind == SlotKind.NOISE)
    missing += [noise_slot(cfg)] * max(0, cfg.noise.repeats - noise)
    enqueue_slots(study, missing, progress)


def enqueue_slots(study: optuna.Study, slots: list[TrialRecord], progress: bool = False) -> None:
    """Queue one WAITING trial per slot (:func:`nas.search.queue.enqueue`: in bulk on RDB
    storages and journal files); Ctrl-C takes effect between two writes, never inside one."""
    enqueue(study, [slot.to_user_attrs() for slot in slots], progress)


def config_summary(cfg: StudyConfig, space: SearchSpace) -> dict[str, Any]:
    """What a study stores of its config (its `config` study attr)."""
    bench = {"bench": to_dict(cfg.bench)} if cfg.bench.enabled else {}
    # target only judges the report: it may change between runs of one fidelity study
    fidelity = {"fidelity": {k: v for k, v in to_dict(cfg.fidelity).items() if k != "target"}} \
        if cfg.fidelity.enabled else {}
    return {"search_space": space.describe(), "architecture": to_dict(cfg.architecture),
            "data": to_dict(cfg.data), "training": to_dict(cfg.training),
            "sampler": to_dict(cfg.sampler), "pruner": to_dict(cfg.pruner), **bench,
            **fidelity}


def stored_config(study: optuna.Study) -> dict[str, Any] | None:
    """The config summary the study was created with (None before it is set)."""
    return study.user_attrs.get(CONFIG_ATTR)


def study_style(study: optuna.Study) -> str:
    """The network style of the study's search space (studies made before styles: per_block)."""
    return (stored_config(study) or {}).get("search_space", {}).get("style", OLD_STYLE)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The search's best single run: the completed trial with the highest accuracy (the first
    objective), confirm trials apart (Optuna's own `best_trial` may be a confirm run, at
    another fidelity)."""
    return best_of(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def best_of(complete: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """:func:`best_trial` among the completed trials ``complete``."""
    # Most accurate first, the first with a pattern that is no confirm run: records are read
    # for the few at the top only (a study of 100k trials).
    for t in sorted(complete, key=lambda t: t.values[0], reverse=True):
        if (r := TrialRecord.from_trial(t)).hash is not None and not r.is_apart:
            return t
    return None


def search_fidelity(study: optuna.Study) -> Fidelity | None:
    """The fidelity the study searches at, from its stored config (None: not stored, or a
    study filled by a user's own objective, whose config holds its search space only)."""
    stored = stored_config(study)
    if stored is None or "training" not in stored:
        return None
    data, training = stored["data"], stored["training"]
    return Fidelity(training.get("epochs"), training.get("steps"), data.get("train_size"),
                    data.get("val_size"))


def study_evidence(study: optuna.Study, complete: Recorded | None = None) -> Evidence:
    """The study's noise, best single run and confirmed patterns (:mod:`.evidence`;
    ``complete``: its completed trials with their records, when already read)."""
    return evidence(study, search_fidelity(study), complete)


@dataclass(frozen=True)
class TopTrial:
    """The best trial as status shows it."""
    number: int
    accuracy: float
    hash: str | None
    connections: int | None
    mbd: int | None


@dataclass(frozen=True)
class StudyStatus:
    """Counts by state, the best trial, an ETA for the queued trials, and the evidence."""
    study: str
    storage: str                   # the URL, password masked
    counts: dict[str, int]         # trials by state name, every state in TrialState's order
    best: TopTrial | None          # None: no completed trial
    seconds_per_trial: float | None  # mean over completed trials (None: none timed)
    eta_seconds: float | None
    reused: int                    # completed trials that reuse a twin's result
    evidence: Evidence

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the evidence as :meth:`Evidence.to_json` writes it)."""
        return {"study": self.study, "storage": self.storage, "counts": dict(self.counts),
                "best": None if self.best is None else asdict(self.best),
                "seconds_per_trial": self.seconds_per_trial, "eta_seconds": self.eta_seconds,
                "reused": self.reused, "evidence": self.evidence.to_json()}


# The record fields status reads of every trial: kinds, patterns, seeds and fidelities (no
# specs or curves; the best trial is read again whole, for its connections and MBD).
STATUS_FIELDS = ("slot", "baseline", "seed", "fidelity", "repeat_of", "hash", "reused_from")


@gc_paused()  # 100k records and runs are built here too: garbage-free, all kept to the end
def study_status(name: str, storage_url: str) -> StudyStatus:
    """The status of a stored study: counts by state, the best trial, an ETA for the queued
    trials, and its :class:`Evidence`."""
    study = load_snapshot(name, storage_url, params=False, keys=STATUS_FIELDS)
    trials = study.get_trials(deepcopy=False)
    by_state = Counter(t.state for t in trials)
    counts = {s.name: by_state[s] for s in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in complete
                 if t.datetime_start and t.datetime_complete]
    per_trial = sum(durations) / len(durations) if durations else None
    workers = max(1, counts["RUNNING"])
    eta = (per_trial * (counts["WAITING"] + counts["RUNNING"]) / workers
           if per_trial is not None else None)
    best = None
    top = best_trial(study)
    if top is not None:
        r = TrialRecord.from_trial(snapshot_source(study).get_trial(top._trial_id))
        best = TopTrial(top.number, top.values[0], r.hash, r.connections, r.mbd)
    records = recorded(complete)
    return StudyStatus(name, mask_url(storage_url), counts, best, per_trial, eta,
                       sum(1 for _, r in records if r.is_reused),
                       study_evidence(study, records))
