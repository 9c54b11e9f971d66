"""Worker liveness on every storage (SQLite, PostgreSQL, journal files): heartbeats, stale
trials failed and queued again.

A worker writes a heartbeat (a trial system attr that changes at every beat) as soon as it
claims a trial and then every interval. A worker that watches a RUNNING trial whose heartbeat
has not changed for longer than the grace period (3 heartbeats) of its own monotonic clock
fails it and queues its slot again. Only changes are compared, never one machine's time with
another's, so a worker whose clock is off neither loses its trials nor fails others'. Failing
is compare-and-set (RUNNING -> FAIL succeeds for one process only: the storages serialise it,
see `storage`), so a slot is queued again once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState, create_trial

from .._optuna.api import retry_attrs, retry_history, trial_id
from .._optuna.reads import StudyReads
from ..record import TrialRecord

_log = logging.getLogger(__name__)
HEARTBEAT = "skipnas:heartbeat"  # trial system attr: changes at every beat (the worker's time)
MAX_RETRIES = 3                   # a slot whose trial died this often is not queued again


def can_requeue(trial: FrozenTrial) -> bool:
    """Whether the slot of ``trial`` may be queued again (fewer than :data:`MAX_RETRIES`)."""
    return len(retry_history(trial)) < MAX_RETRIES


def requeue(study: optuna.Study, failed: FrozenTrial) -> bool:
    """Queue the slot of a trial that died or was interrupted again: same params, the slot's
    fields of its record, and Optuna's `failed_trial` / `retry_history` system attrs. False
    when the slot has been retried :data:`MAX_RETRIES` times already."""
    if not can_requeue(failed):
        return False
    study.add_trial(create_trial(
        state=TrialState.WAITING, params=failed.params, distributions=failed.distributions,
        user_attrs=TrialRecord.from_trial(failed).queued().to_user_attrs(),
        system_attrs=retry_attrs(failed)))
    return True


class StaleSweep:
    """Fails the RUNNING trials whose heartbeat this process has seen unchanged for longer than
    ``grace_seconds`` of ``clock`` (monotonic; on SQLite it stands still while this process
    waits for the write lock, since no heartbeat could be written then either), and queues
    their slots again. It remembers what it saw between calls, so a trial is failed only after
    it has been watched that long."""

    def __init__(self, grace_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.grace, self.clock = grace_seconds, clock
        self.seen: dict[int, tuple[object, float]] = {}  # trial id: (heartbeat, seen since)

    def __call__(self, study: optuna.Study, storage: BaseStorage) -> list[int]:
        """Returns the numbers of the trials this call failed."""
        trials = StudyReads(study).trials((TrialState.RUNNING,), keys=(HEARTBEAT,))
        now, failed, running = self.clock(), [], set()
        for t in trials:
            tid, beat = trial_id(t), t.system_attrs.get(HEARTBEAT)
            running.add(tid)
            if tid not in self.seen or self.seen[tid][0] != beat:
                self.seen[tid] = (beat, now)
                continue
            if now - self.seen[tid][1] <= self.grace:
                continue
            try:
                if not storage.set_trial_state_values(tid, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:  # another process failed it first, or it finished
                continue
            requeue(study, storage.get_trial(tid))
            failed.append(t.number)
        self.seen = {k: v for k, v in self.seen.items() if k in running}
        return failed


def first_beat() -> dict[str, float]:
    """A trial's first heartbeat, as system attrs to store with its claim."""
    return {HEARTBEAT: time.time()}


class Heartbeat:
    """Beats for one trial from a background thread while the trial runs; the first beat is
    written before the constructor returns, unless it was stored with the claim
    (``beaten``: :func:`first_beat`). Stops by itself once the trial is finished (for
    instance failed as stale by another worker while this one was paused)."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval: float,
                 beaten: bool = False):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        if not beaten:
            self.beat()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def beat(self) -> bool:
        try:
            self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT, time.time())
            return True
        except UpdateFinishedTrialError:
            return False

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                if not self.beat():
                    return
            except Exception as e:  # a passing storage error: the next beat may go through
                _log.warning("heartbeat of trial id %d not written (%s: %s); retrying",
                             self.trial_id, type(e).__name__, e)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
