"""How many CPU threads a worker trains on: the workers of one machine share its cores.

Each worker process trains with as many threads as torch is given; two processes that each take
every core of a 2-core machine ran 15x slower together than one alone (issue 40: 27 images/s in
all against 475-663 with one thread each). A worker therefore takes, before each trial, its
share of the cores: the cores divided by this machine's live workers of the study (the RUNNING
trials' `worker` attr names host and pid). ``[training] threads`` or ``--threads``, or an
``OMP_NUM_THREADS`` the user set, fixes the count instead.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from .._optuna.reads import StudyReads
from ..record import TrialRecord

_log = logging.getLogger(__name__)


def worker_name() -> str:
    """This process as a trial's `worker` attr: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def machine_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def host_workers(study: optuna.Study) -> int:
    """This machine's live workers of ``study``, this one included: the processes of this host
    with a RUNNING trial, whose pid still runs."""
    host, me = socket.gethostname(), os.getpid()
    pids = {me}
    for t in StudyReads(study).trials((TrialState.RUNNING,), keys=("worker",)):
        name = TrialRecord.from_trial(t).worker
        if not isinstance(name, str) or name.rpartition(":")[0] != host:
            continue
        pid = name.rpartition(":")[2]
        if pid.isdigit() and int(pid) not in pids and _alive(int(pid)):
            pids.add(int(pid))
    return len(pids)


@dataclass
class CoreShare:
    """A worker's threads, chosen again before each trial. ``threads``: fixed by the config
    or ``--threads`` (0: share the cores); ``local``: workers this process started on this
    machine, counted before their first trials run."""
    threads: int = 0
    local: int = 1
    _warned: bool = False

    def __call__(self, study: optuna.Study) -> int:
        """The threads for this worker's next trial (warns once when the machine is
        oversubscribed)."""
        fixed = self.threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
        workers, cores = max(self.local, host_workers(study)), machine_cores()
        threads = fixed or max(1, cores // workers)
        if threads * workers > cores and not self._warned:
            self._warned = True
            how = f"{threads} threads each" if fixed else "1 thread each"
            _log.warning("%d workers of study %r run on this machine's %d cores with %s: "
                         "oversubscribed, each trial runs slower (fewer workers, or "
                         "--threads, share the cores)", workers, study.study_name, cores, how)
        return threads
