"""Workers: claim queued trials and run each (:mod:`.objective`), several processes to a machine,
with the study's progress.

A killed worker's trial goes stale (no heartbeat), is failed by another worker and its slot
queued again (`liveness`), so the study still ends with exactly the configured number of
finished trials; a worker that was paused past that point drops its result quietly.
"""
from __future__ import annotations

import dataclasses
import json
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

from ... import interrupts
from ...engine.train import resolve_device
from ...errors import UserError
from .._optuna.api import live_trial, storage_of, tell_live, trial_id
from .._optuna.reads import StudyReads, claim_next
from .._optuna.schema import ensure_indexes
from ..config import Fidelity, StudyConfig, check_config
from ..record import TrialRecord, record
from ..slots import FINISHED, counts_as_slot
from ..storage.backends import load_study
from ..storage.sqlite import liveness_clock
from ..strategy.samplers import make_pruner, make_sampler
from .cores import CoreShare, worker_name
from .liveness import Heartbeat, StaleSweep, can_requeue, first_beat, requeue
from .objective import TRIAL_FAILURES, Objective, Values

_log = logging.getLogger(__name__)


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
                               sampler=make_sampler(cfg.search_space.build(), cfg.sampler,
                                                    cfg.seed if seed is None else seed),
                               pruner=make_pruner(cfg.pruner, cfg.training.epochs))
            check_config(study, cfg)
        ensure_indexes(storage_of(study))
        storage = storage_of(study)
        sweep = StaleSweep(3 * cfg.heartbeat_seconds, liveness_clock(storage))
        objective = Objective(cfg)
        share = CoreShare(cfg.training.threads, local_workers)
        report = WorkerReport()
        bar = _StudyBar(study, disable=not progress, workers=local_workers,
                        search=cfg.search_fidelity)
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
                study.sampler = make_sampler(cfg.search_space.build(), cfg.sampler,
                                             (cfg.seed + claimed.number) % 2 ** 32)
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
        except TRIAL_FAILURES as e:
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
    """The progress of the trials this run is to do (those unfinished when it starts), every
    worker's counted. Counting reads the whole study (~50-100 ms at 100,000 trials on SQLite),
    so the bar reads it again only once :data:`BAR_SHARE` of the time since its last read
    would pay for another: at every trial of a small study, every few seconds of a large one,
    whatever the number of workers. Until this run's first trial ends, an ETA from the study's
    earlier trials at the same fidelity (:func:`_earlier_eta`) stands in for the bar's own."""

    def __init__(self, study: optuna.Study, disable: bool, workers: int = 1,
                 search: Fidelity | None = None):
        from tqdm.auto import tqdm
        self.study = study
        self.last = "-"  # the state of this worker's last trial
        self.best = "-"
        self.done_before = 0  # slots finished before this run started
        self.read_at, self.read_seconds = -math.inf, 0.0
        total, done = (0, 0) if disable else self._counts()
        self.done_before = done
        # Nothing to do: no bar at all (an empty one printed a stray `0trial` line).
        self.bar = tqdm(total=total - done, disable=disable or total == done, unit="trial",
                        dynamic_ncols=True, desc=study.study_name)
        self.eta = None if self.bar.disable else _earlier_eta(study, workers, search)
        self._show()

    def refresh(self, last: str | None = None, now: bool = True) -> None:
        """Count the study's trials again (``last``: the state of this worker's last trial;
        not ``now``: only when the last count is due, see the class)."""
        self.last = last or self.last
        if self.bar.disable:
            return
        clock = time.monotonic()
        if now or clock - self.read_at >= self.read_seconds / BAR_SHARE:
            total, done = self._counts()
            self.bar.total, self.bar.n = total - self.done_before, done - self.done_before
            self.read_at, self.read_seconds = clock, time.monotonic() - clock
        self._show()

    def _show(self) -> None:
        if self.bar.disable:
            return
        first = {} if self.bar.n else {"ETA": "after the first trial" if self.eta is None
                                       else f"~{_duration(self.eta)} (earlier trials)"}
        self.bar.set_postfix(best=self.best, last=self.last, **first)

    def _counts(self) -> tuple[int, int]:
        """The study's slots and those finished (from counts: a study of 100k trials is not
        read whole at every trial); the best value read on the way."""
        reads = StudyReads(self.study)
        counts = reads.state_counts()
        failed = reads.trials((TrialState.FAIL,), keys=("fail_reason", "requeued"))
        dropped = sum(1 for t in failed if not counts_as_slot(t))  # queued again, or stale
        best = reads.best_value()
        self.best = f"{best:.4f}" if best is not None else "-"
        return (sum(counts.values()) - dropped,
                sum(counts.get(s, 0) for s in FINISHED) - dropped)

    def update(self, trial: FrozenTrial) -> None:
        self.refresh(trial.state.name, now=False)

    def note(self, message: str) -> None:
        self.bar.write(f"skipnas: {message}", file=sys.stderr)

    def close(self) -> None:
        """The final count (other workers may have finished since the last refresh), then
        close: the last bar shows what the summary counts."""
        self.refresh()
        self.bar.close()


def _earlier_eta(study: optuna.Study, workers: int, search: Fidelity | None) -> float | None:
    """Seconds the unfinished trials would take on ``workers`` workers at the mean train time
    of the study's earlier trained trials at each one's fidelity (``search``: the study's own,
    which its search trials do not store); None when some fidelity has none."""
    own = json.dumps(None if search is None else search.to_dict(), sort_keys=True)

    def fidelity_of(t: FrozenTrial) -> str:
        fidelity = TrialRecord.from_trial(t).fidelity
        return own if fidelity is None else json.dumps(fidelity, sort_keys=True)

    reads = StudyReads(study)
    seconds: dict[str, list[float]] = {}
    for t in reads.trials((TrialState.COMPLETE,), keys=("fidelity", "train_seconds",
                                                        "reused_from")):
        r = TrialRecord.from_trial(t)
        if r.train_seconds is not None and not r.is_reused:
            seconds.setdefault(fidelity_of(t), []).append(r.train_seconds)
    total = 0.0
    for t in reads.trials((TrialState.WAITING, TrialState.RUNNING), keys=("fidelity",)):
        times = seconds.get(fidelity_of(t))
        if not times:
            return None
        total += sum(times) / len(times)
    return total / workers


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else \
        f"{minutes:02d}:{secs:02d}"
