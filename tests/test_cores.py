"""Workers of one machine share its cores: each trains on its share of them, counted again
before each trial from the study's RUNNING trials of this host (issue 40: two processes that
each took every core ran 15x slower together than one alone)."""
import logging
import os
import socket
import subprocess
import sys

import optuna
import pytest

import nas.search.execution.cores as cores
from nas.search.execution.cores import CoreShare, host_workers
from nas.search.execution.worker import run_worker
from nas.search.experiment.study import create_study
from nas.search.record import TrialRecord
from tests.testing import run_cli, tiny_config, tiny_raw, write_toml


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def _running(study: optuna.Study, *workers: str) -> None:
    for name in workers:
        study.ask().set_user_attr("worker", name)


def test_host_workers_counts_this_hosts_live_workers_once_each():
    host = socket.gethostname()
    study = optuna.create_study()
    assert host_workers(study) == 1   # this process alone
    _running(study, f"{host}:{os.getppid()}", f"{host}:{os.getppid()}",   # alive, twice
             f"{host}:{_dead_pid()}",                                     # gone
             f"elsewhere:{os.getppid()}",                                 # another machine
             f"{host}:{os.getpid()}")                                     # this one
    assert host_workers(study) == 2


def test_a_worker_takes_its_share_of_the_cores_and_warns_once_when_oversubscribed(
        monkeypatch, caplog):
    host = socket.gethostname()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cores, "machine_cores", lambda: 4)
    study = optuna.create_study(study_name="shared")
    share = CoreShare()
    assert share(study) == 4                  # alone: every core
    _running(study, f"{host}:{os.getppid()}")
    assert share(study) == 2                  # two workers: two cores each
    assert CoreShare(local=4)(study) == 1     # a caller that started four
    assert CoreShare(threads=3)(study) == 3   # fixed by the config or --threads
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert CoreShare()(study) == 1            # or by the user's environment
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(cores, "machine_cores", lambda: 1)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        share(study)
        share(study)
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ["2 workers of study 'shared' run on this machine's 1 cores with 1 "
                      "thread each: oversubscribed, each trial runs slower (fewer workers, or "
                      "--threads, share the cores)"]


def test_trials_record_the_threads_they_trained_on(tmp_path, monkeypatch):
    """A worker started beside another on a 2-core machine trains on one thread, and says
    so in each trial's record; --threads fixes the count."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cores, "machine_cores", lambda: 2)
    cfg = tiny_config(tmp_path, trials=2, training={"device": "cpu", "epochs": 1})
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False, local_workers=2)
    assert [TrialRecord.from_trial(t).threads for t in study.trials] == [1, 1]

    config = write_toml(tmp_path / "t.toml", tiny_raw(tmp_path, name="threads", trials=2,
                                                      training={"device": "cpu", "epochs": 1}))
    out = run_cli("study", "start", str(config), "--threads", "2", "-q")
    assert out.returncode == 0, out.stderr
    again = optuna.load_study(study_name="threads", storage=f"sqlite:///{tmp_path}/tiny.db")
    assert [TrialRecord.from_trial(t).threads for t in again.trials] == [2, 2]
    refused = run_cli("worker", str(config), "--threads", "0")
    assert refused.returncode == 2 and "--threads" in refused.stderr


@pytest.mark.parametrize("threads, message", [(-1, "must be in 0..1024"),
                                              (5000, "must be in 0..1024")])
def test_threads_are_validated(tmp_path, threads, message):
    from nas.errors import UserError
    with pytest.raises(UserError, match=f"training.threads: {message}"):
        tiny_config(tmp_path, training={"threads": threads})
