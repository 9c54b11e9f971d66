"""Workers: claim queued trials, train the pattern each proposes, store its record.

A killed worker's trial goes stale (no heartbeat), is failed by another worker and its slot
queued again (`liveness`), so the study still ends with exactly the configured number of
finished trials; a worker that was paused past that point drops its result quietly.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from search_spaces import Pattern, PatternError

from .. import interrupts
from ..engine.configs import DataConfig
from ..engine.data import DataBundle
from ..engine.spec import PatternSpec, make_spec
from ..engine.train import TrainResult, resolve_device, train
from ..errors import UserError
from .config import Fidelity, StudyConfig
from .cores import CoreShare, worker_name
from .liveness import Heartbeat, StaleSweep, can_requeue, first_beat, requeue
from .optuna_api import live_trial, params_in_one_transaction, storage_of, tell_live, trial_id
from .reads import StudyReads, claim_next, ensure_indexes
from .record import SlotKind, TrialRecord, record
from .samplers import make_pruner, make_sampler
from .storage import liveness_clock, load_study
from .study import FINISHED, baseline_pattern, check_config, counts_as_slot

Values = float | tuple[float, float]
_log = logging.getLogger(__name__)


class Objective:
    """Trains the pattern a trial proposes (or its baseline template) and stores its record.
    Data is loaded once per worker."""

    def __init__(self, cfg: StudyConfig, progress: bool = False):
        self.cfg = cfg
        self.space = cfg.search_space.build()
        self.device = resolve_device(cfg.training.device)
        self._data = {cfg.data: cfg.data.load(self.device)}
        self.progress = progress
        self.twins = TwinIndex()
        self.threads = cfg.training.threads  # CPU threads of the next trial (CoreShare)

    def data(self, data_cfg: DataConfig) -> DataBundle:
        """The data of a fidelity, loaded once per worker."""
        if data_cfg not in self._data:
            self._data[data_cfg] = data_cfg.load(self.device)
        return self._data[data_cfg]

    def __call__(self, trial: optuna.Trial) -> Values:
        slot = TrialRecord.from_trial(trial)
        pattern, seed = self.pattern_for(trial, slot)
        search = self.cfg.search_fidelity
        fidelity = Fidelity.from_dict(slot.fidelity) if slot.fidelity else search
        spec = self.describe(trial, pattern, seed)
        twin = _completed_twin(trial.study, pattern.hash, seed, fidelity, search,
                               before=trial.number, grace=3 * self.cfg.heartbeat_seconds,
                               index=self.twins, asking=trial_id(trial))
        if twin is not None:  # same pattern, seed and fidelity already trained: reuse it
            record(trial, reused_from=twin.number, train_seconds=0.0,
                   val_curve=TrialRecord.from_trial(twin).val_curve)
            return twin.values[0] if not self.cfg.multi_objective else tuple(twin.values)
        # Noise, confirm and fidelity runs measure a pattern: never pruned (cut short).
        prune = slot.kind not in (SlotKind.NOISE, SlotKind.CONFIRM, SlotKind.FIDELITY)
        result = self.train(trial, spec, seed, fidelity, prune)
        return self.values(spec, result)

    def pattern_for(self, trial: optuna.Trial, slot: TrialRecord) -> tuple[Pattern, int]:
        """The pattern and seed of a slot: the search space's proposal at the configured seed,
        the slot's own pattern, a search pattern to repeat (noise), or a baseline template."""
        if slot.kind == SlotKind.NOISE and slot.pattern is None:
            pattern, number = _pattern_to_repeat(trial.study)
            record(trial, pattern=pattern.to_dict(), repeat_of=number)
            assert slot.seed is not None
            return pattern, slot.seed
        if slot.pattern is not None:
            assert slot.seed is not None
            return Pattern.from_dict(slot.pattern), slot.seed
        if slot.baseline is None:
            with params_in_one_transaction(trial):
                pattern = self.space.suggest(_Interruptible(trial))
            return pattern, self.cfg.training.seed
        assert slot.seed is not None
        return baseline_pattern(self.space, slot.baseline, slot.style_in(self.space.style),
                                slot.budget, slot.output), slot.seed

    def describe(self, trial: optuna.Trial, pattern: Pattern, seed: int) -> PatternSpec:
        """Measure the pattern's network and record its spec and metrics before training."""
        slot = TrialRecord.from_trial(trial)
        template = {"template": slot.baseline, "budget": slot.budget,
                    "block_output": slot.output} if slot.baseline else {}
        spec = make_spec(pattern, self.cfg.architecture,
                         origin={"study": self.cfg.name, "trial": trial.number, "seed": seed,
                                 "dataset": self.cfg.data.name, **template})
        cpu = {"threads": self.threads} if self.device.type == "cpu" and self.threads else {}
        record(trial, spec=spec.to_dict(), hash=pattern.hash, seed=seed, device=str(self.device),
               style=pattern.style, **cpu, **spec.metrics)
        return spec

    def train(self, trial: optuna.Trial, spec: PatternSpec, seed: int, fidelity: Fidelity,
              prune: bool = True) -> TrainResult:
        """Train at ``fidelity``, reporting each epoch to the pruner (``prune``); record the
        outcome."""
        cfg = self.cfg

        def report(epoch: int, accuracy: float) -> None:
            if cfg.multi_objective or not prune:
                return
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} at accuracy {accuracy:.4f}")

        data_cfg, train_cfg = cfg.at_fidelity(fidelity)
        result = train(spec, self.data(data_cfg), replace(train_cfg, seed=seed,
                                                          threads=self.threads), on_epoch=report,
                       on_batch=interrupts.check, progress=self.progress).result
        record(trial, train_seconds=result.train_seconds, val_curve=result.val_curve,
               loss_curve=result.loss_curve, images_per_second=result.images_per_second,
               status=result.status)
        if result.status != "ok":
            record(trial, fail_reason=result.message)
            raise _Diverged(result.message)
        return result

    def values(self, spec: PatternSpec, result: TrainResult) -> Values:
        if self.cfg.multi_objective:
            return result.val_accuracy, float(spec.metrics[self.cfg.sampler.second_objective])
        return result.val_accuracy


class _Interruptible:
    """A trial whose every suggestion is a safe point for Ctrl-C and SIGTERM (a space with
    thousands of keys samples for minutes)."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def suggest_float(self, name: str, low: float, high: float) -> float:
        interrupts.check()
        return self.trial.suggest_float(name, low, high)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        interrupts.check()
        return self.trial.suggest_categorical(name, choices)


class _Diverged(Exception):
    pass


class _NothingToRepeat(Exception):
    pass


# The record fields a twin lookup reads (and the twin's curve, which a reusing trial copies).
TWIN_FIELDS = ("hash", "seed", "fidelity", "reused_from", "val_curve")


class TwinIndex:
    """A study's completed, trained trials by (pattern hash, seed), for storages that cannot
    select trials by hash (journal files, storage proxies; RDB storages are asked directly,
    :meth:`StudyReads.with_hash`). A finished trial never changes, so each look reads the
    records of the trials finished since the last one only."""

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, study: str | None) -> None:
        self._study = study
        self._seen: set[int] = set()
        self._twins: dict[tuple[str, int | None], list[FrozenTrial]] = {}

    def update(self, study: optuna.Study) -> None:
        """Index the trials of ``study`` completed since the last update."""
        if study.study_name != self._study:
            self._reset(study.study_name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number in self._seen:
                continue
            self._seen.add(t.number)
            r = TrialRecord.from_trial(t)
            if r.hash is not None and not r.is_reused:
                self._twins.setdefault((r.hash, r.seed), []).append(t)

    def lookup(self, study: optuna.Study, pattern_hash: str, seed: int, wanted: dict[str, Any],
               search: dict[str, Any], asking: int | None = None
               ) -> tuple[FrozenTrial | None, list[FrozenTrial]]:
        """On the study as it is now, the lowest-numbered completed trial of this pattern and
        seed at fidelity ``wanted`` (one without a recorded fidelity ran at ``search``), and
        the RUNNING ones, leaving out trial id ``asking`` (the trial that asks): in one read by
        hash where the storage can select by it, else the running trials read first, then
        this index updated (a twin that completes in between is then found complete)."""
        reads = StudyReads(study)
        trials = reads.with_hash(pattern_hash, TWIN_FIELDS,
                                 states=(TrialState.COMPLETE, TrialState.RUNNING),
                                 other_than=asking)
        if trials is None:
            trials = reads.trials((TrialState.RUNNING,), TWIN_FIELDS)
            self.update(study)
            trials += self._twins.get((pattern_hash, seed), [])
        twins = [t for t in trials if trial_id(t) != asking and
                 (r := TrialRecord.from_trial(t)).hash == pattern_hash and r.seed == seed and
                 not r.is_reused and (r.fidelity or search) == wanted]
        complete = min((t for t in twins if t.state == TrialState.COMPLETE),
                       key=lambda t: t.number, default=None)
        return complete, [t for t in twins if t.state == TrialState.RUNNING]


def _completed_twin(study: optuna.Study, pattern_hash: str, seed: int, fidelity: Fidelity,
                    search: Fidelity, before: int | None = None, grace: float = 30.0,
                    poll_seconds: float = 1.0, index: TwinIndex | None = None,
                    asking: int | None = None) -> FrozenTrial | None:
    """A completed trial that trained this pattern with this seed at this fidelity (a trial
    without a recorded fidelity ran at the search's), found through ``index`` (a fresh one
    if not given). A running twin numbered below ``before`` is waited for (two workers that
    drew the same pattern train it once; the lower number trains, so they never wait for
    each other), while stale trials are failed as in the worker loop; None when it fails or
    there is no twin. ``asking``: the trial id of the trial that asks, never its own twin
    (and not read)."""
    wanted, searched = fidelity.to_dict(), search.to_dict()
    index = TwinIndex() if index is None else index
    sweep = StaleSweep(grace, liveness_clock(storage_of(study)))
    while True:
        twin, running = index.lookup(study, pattern_hash, seed, wanted, searched, asking)
        if twin is not None:
            return twin
        if before is None or not any(t.number < before for t in running):
            return None
        interrupts.check()
        time.sleep(poll_seconds)
        sweep(study, storage_of(study))


def _pattern_to_repeat(study: optuna.Study) -> tuple[Pattern, int]:
    """The earliest completed search pattern that no noise slot repeats yet, and its trial
    number (earliest: the choice does not depend on accuracy, so the measured spread is not
    biased by the selection)."""
    trials = study.get_trials(deepcopy=False)
    records = [(t, TrialRecord.from_trial(t)) for t in trials]
    taken = {r.hash for t, r in records if r.kind == SlotKind.NOISE and counts_as_slot(t)}
    for t, r in records:
        if t.state == TrialState.COMPLETE and r.kind == SlotKind.SEARCH and r.spec and \
                not r.is_reused and r.hash not in taken:
            return PatternSpec.from_dict(r.spec).pattern, t.number
    raise _NothingToRepeat("no completed search pattern left to train again for the noise "
                           "measurement")


@dataclass
class WorkerReport:
    trials: int = 0
    seconds: float = 0.0
    train_seconds: float = 0.0

    def __add__(self, other: "WorkerReport") -> "WorkerReport":
        return WorkerReport(self.trials + other.trials, self.seconds + other.seconds,
                            self.train_seconds + other.train_seconds)


def run_worker(cfg: StudyConfig, *, seed: int | None = None, progress: bool = True,
               study: optuna.Study | None = None, poll_seconds: float = 1.0,
               local_workers: int = 1) -> WorkerReport:
    """Claim and run WAITING trials until none is waiting and none is running elsewhere
    (a running one may still fail and be queued again here). Each pass first fails the trials
    of workers silent for 3 heartbeats and queues their slots again. Ctrl-C and SIGTERM take
    effect between batches or trials (:mod:`nas.interrupts`).

    The sampler is seeded with ``seed``, or else with the study's seed plus the number of the
    first trial this worker claims: one worker on a fresh study replays exactly, while a
    restart, an extension or another worker (each claims a later trial first) proposes new
    patterns instead of drawing the same ones again.

    Before each trial the worker takes its share of the machine's cores (:class:`CoreShare`;
    ``local_workers``: the workers its caller started on this machine)."""
    seeded = seed is not None
    with interrupts.deferred():
        if study is None:
            study = load_study(cfg.name, cfg.storage_url,
                               sampler=make_sampler(cfg, cfg.seed if seed is None else seed),
                               pruner=make_pruner(cfg))
            check_config(study, cfg)
        ensure_indexes(storage_of(study))
        storage = storage_of(study)
        sweep = StaleSweep(3 * cfg.heartbeat_seconds, liveness_clock(storage))
        objective = Objective(cfg)
        share = CoreShare(cfg.training.threads, local_workers)
        report = WorkerReport()
        bar = _StudyBar(study, disable=not progress)
        while True:
            interrupts.check()
            sweep(study, storage)
            claimed = claim_next(study, TrialRecord(worker=worker_name()).to_user_attrs(),
                                 first_beat())
            if claimed is None:
                if not StudyReads(study).trials((TrialState.RUNNING,), keys=()):
                    break
                bar.refresh(now=False)  # other workers' trials finish meanwhile
                time.sleep(poll_seconds)
                continue
            if not seeded:
                study.sampler = make_sampler(cfg, (cfg.seed + claimed.number) % 2 ** 32)
                seeded = True
            start = time.perf_counter()
            if objective.device.type == "cpu":
                objective.threads = share(study)
            frozen = _run_one(study, claimed, objective, cfg.heartbeat_seconds)
            if frozen is None:
                bar.note(f"trial {claimed.number} was failed and queued again while this "
                         f"worker was silent; its result is dropped")
                continue
            report.trials += 1
            report.seconds += time.perf_counter() - start
            report.train_seconds += TrialRecord.from_trial(frozen).train_seconds or 0.0
            bar.update(frozen)
        bar.close()
    return report


BAR_SHARE = 0.02  # the most of a worker's time its progress bar spends counting the study

WORKERS_PER_GPU = 4
"""Measured on one H200 with 16 cores (benchmarks/trial_throughput.py, quickstart trials): 1
worker 4060 trials/h, 4 workers 14126, 8 workers 7412 (the small network is launch-bound: more
processes share the GPU until the host's launch overhead and the cores run out)."""


def auto_workers(device: str) -> int:
    """Workers per machine for ``workers = 0``: one per CPU core, each on one thread (2 cores,
    quickstart network: 2 x 1 thread trained 1.38x the images of 1 x 2 threads), or
    :data:`WORKERS_PER_GPU` per GPU, at most one per core."""
    cores = os.cpu_count() or 1
    if resolve_device(device).type == "cuda":
        import torch
        return max(1, min(cores, WORKERS_PER_GPU * torch.cuda.device_count()))
    return cores


def run_workers(cfg: StudyConfig, workers: int, *, progress: bool = True,
                study: optuna.Study | None = None) -> WorkerReport:
    """``workers`` workers on this machine (0: :func:`auto_workers`): this process and
    ``workers - 1`` spawned ones, each on its share of the CPU cores (:class:`CoreShare`),
    spreading over the GPUs (``device = "auto"`` or ``"cuda"``)."""
    workers = workers or auto_workers(cfg.training.device)
    if workers == 1:
        return run_worker(cfg, progress=progress, study=study)
    devices = [cfg.training.device] * workers
    if resolve_device(cfg.training.device).type == "cuda" and \
            cfg.training.device in ("auto", "cuda"):
        import torch
        devices = [f"cuda:{w % torch.cuda.device_count()}" for w in range(workers)]
    context = multiprocessing.get_context("spawn")  # no forked CUDA or storage state
    reports = context.Queue()
    children = [context.Process(target=_child_worker, daemon=True,
                                args=(_on_device(cfg, devices[w]), reports, workers))
                for w in range(1, workers)]
    for child in children:
        child.start()
    try:
        report = run_worker(_on_device(cfg, devices[0]), progress=progress, study=study,
                            local_workers=workers)
        for child in children:
            child.join()
            if child.exitcode == 0:
                report += WorkerReport(**reports.get(timeout=60))
    finally:
        for child in children:  # interrupted: the others give their trials back too
            if child.is_alive():
                child.terminate()
                child.join()
    failed = [c.exitcode for c in children if c.exitcode]
    if failed:
        raise UserError(f"{len(failed)} of {workers - 1} spawned workers exited with status "
                        f"{failed[0]} (see their messages above); the study is resumable")
    return report


def _on_device(cfg: StudyConfig, device: str) -> StudyConfig:
    return cfg if device == cfg.training.device else \
        replace(cfg, training=replace(cfg.training, device=device))


def _child_worker(cfg: StudyConfig, reports: Any, local_workers: int) -> None:
    signal.signal(signal.SIGTERM, interrupts.terminate)  # like the CLI: give the trial back
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        reports.put(dataclasses.asdict(run_worker(cfg, progress=False,
                                                  local_workers=local_workers)))
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)


def _run_one(study: optuna.Study, claimed: FrozenTrial, objective: Objective,
             heartbeat_seconds: float) -> FrozenTrial | None:
    """Run one trial this worker claimed (its first heartbeat stored with the claim) and tell
    its outcome; None when another worker failed it as stale meanwhile (this one was paused or
    cut off). Interrupted (Ctrl-C, SIGTERM): the trial is failed with reason "interrupted",
    its slot queued again, and the interrupt goes on."""
    claimed_id = trial_id(claimed)
    heartbeat = Heartbeat(storage_of(study), claimed_id, heartbeat_seconds, beaten=True)
    try:
        trial = live_trial(study, claimed_id, claimed)
        try:
            values = objective(trial)
        except UpdateFinishedTrialError:
            raise
        except optuna.TrialPruned:
            return _tell(study, trial, TrialState.PRUNED)
        except (_Diverged, _NothingToRepeat, RuntimeError, FloatingPointError,
                PatternError) as e:
            # One bad trial (diverged, out of memory, ...) never stops the study.
            if TrialRecord.from_trial(trial).fail_reason is None:
                record(trial, fail_reason=f"{type(e).__name__}: {e}")
            return _tell(study, trial, TrialState.FAIL)
        except KeyboardInterrupt:
            _give_back(study, trial, claimed_id)
            raise
        return _tell(study, trial, TrialState.COMPLETE, values)
    except UpdateFinishedTrialError:
        return None
    finally:
        heartbeat.close()


def _give_back(study: optuna.Study, trial: optuna.Trial, claimed_id: int) -> None:
    """Fail an interrupted trial with reason "interrupted" and queue its slot again. A storage
    error here (a forced second Ctrl-C, a lost connection) gets a second attempt, and a trial
    still not written is left to the other workers' stale sweep. The interrupt itself always
    goes on. Whatever it could not do is logged."""
    taken = ("trial %d had already been failed as stale by another worker (this one was silent "
             "for 3 heartbeats), which queued its slot again")
    for attempt in range(2):
        try:
            # As stored: keys drawn but not yet written are not the slot's.
            stored = storage_of(study).get_trial(claimed_id)
            again = can_requeue(stored)
            record(trial, fail_reason="interrupted", requeued=again or None)
            if _tell(study, trial, TrialState.FAIL) is None:
                _log.warning(taken, trial.number)
            elif again:  # its params, slot fields and retry history are what `stored` holds
                requeue(study, stored)
            return
        except UpdateFinishedTrialError:  # failed meanwhile (stale sweep, or our 1st attempt)
            _log.warning(taken, trial.number)
            return
        except Exception as e:
            if attempt == 1:
                _log.warning("trial %d could not be given back (%s: %s); the other workers' "
                             "stale sweep will fail it and queue its slot again", trial.number,
                             type(e).__name__, e)
                return


def _tell(study: optuna.Study, trial: optuna.Trial, state: TrialState,
          values: Values | None = None) -> FrozenTrial | None:
    """Tell the outcome; None when the trial was already finished by another worker."""
    told = values if state == TrialState.COMPLETE else None
    try:
        return tell_live(study, trial, state, told)
    except UpdateFinishedTrialError:
        return None


class _StudyBar:
    """The study's progress, every worker's trials counted. Counting reads the whole study
    (~50-100 ms at 100,000 trials on SQLite), so the bar reads it again only once
    :data:`BAR_SHARE` of the time since its last read would pay for another: at every trial
    of a small study, every few seconds of a large one, whatever the number of workers."""

    def __init__(self, study: optuna.Study, disable: bool):
        from tqdm.auto import tqdm
        self.study = study
        self.last = "-"  # the state of this worker's last trial
        self.best = "-"
        self.bar = tqdm(total=0, disable=disable, unit="trial", dynamic_ncols=True,
                        desc=study.study_name)
        self.read_at, self.read_seconds = -math.inf, 0.0
        self.refresh()

    def refresh(self, last: str | None = None, now: bool = True) -> None:
        """Count the study's trials again (``last``: the state of this worker's last trial;
        not ``now``: only when the last count is due, see the class)."""
        self.last = last or self.last
        if self.bar.disable:
            return
        clock = time.monotonic()
        if now or clock - self.read_at >= self.read_seconds / BAR_SHARE:
            self._read()
            self.read_at, self.read_seconds = clock, time.monotonic() - clock
        self.bar.set_postfix(best=self.best, last=self.last)

    def _read(self) -> None:
        # From counts: a study of 100k trials is not read whole at every trial.
        reads = StudyReads(self.study)
        counts = reads.state_counts()
        failed = reads.trials((TrialState.FAIL,), keys=("fail_reason", "requeued"))
        dropped = sum(1 for t in failed if not counts_as_slot(t))  # queued again, or stale
        best = reads.best_value()
        self.best = f"{best:.4f}" if best is not None else "-"
        self.bar.total = sum(counts.values()) - dropped
        self.bar.n = sum(counts.get(s, 0) for s in FINISHED) - dropped

    def update(self, trial: FrozenTrial) -> None:
        self.refresh(trial.state.name, now=False)

    def note(self, message: str) -> None:
        self.bar.write(f"skipnas: {message}", file=sys.stderr)

    def close(self) -> None:
        """The final count (other workers may have finished since the last refresh), then
        close: the last bar shows what the summary counts."""
        self.refresh()
        self.bar.close()
