"""A study's slots: the trials its config asks for (each template's baselines, a benchmark's
patterns, search trials, noise repeats), what each one trains, and which trials still fill one.

A study holds exactly the trials its config asks for: one WAITING trial is queued per missing
slot, and workers only ever claim WAITING trials. A killed worker's trial goes stale (no
heartbeat), is marked FAIL and its slot queued again (`liveness`); an interrupted one is marked
FAIL "interrupted" and queued again at once. So the study still ends with exactly the configured
number of finished trials.
"""
from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from search_spaces import Pattern, PatternError, SearchSpace, budgeted_pattern, template_pattern
from search_spaces.spaces import sample_patterns

from ..errors import UserError
from ._optuna.queue import enqueue
from ._optuna.reads import StudyReads
from .config import StudyConfig
from .record import QUEUED_FIELDS, SlotKind, TrialRecord

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
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


def enqueue_slots(study: optuna.Study, slots: list[TrialRecord], progress: bool = False) -> None:
    """Queue one WAITING trial per slot (in bulk on RDB storages and journal files); Ctrl-C
    takes effect between two writes, never inside one."""
    enqueue(study, [slot.to_user_attrs() for slot in slots], progress)


# What a slot's count reads of every trial: its queued fields and whether it still counts.
SLOT_FIELDS = tuple(sorted({k for fields in QUEUED_FIELDS.values() for k in fields}
                           | {"fail_reason", "requeued"}))


def enqueue_missing(study: optuna.Study, cfg: StudyConfig, progress: bool = False) -> None:
    """Queue the slots ``cfg`` asks of its study that ``study`` does not hold yet (baselines,
    benchmark patterns, search trials, noise repeats; ``progress``: a bar while a large queue is
    written)."""
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

