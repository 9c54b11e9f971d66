"""Ctrl-C and SIGTERM while a study runs are noted where they arrive and raised at safe points
(nas.interrupts): between batches and between trials, never inside a storage call. The same
signals sent to real worker processes: tests/test_faults.py."""
import os
import signal
import traceback

import pytest
import torch
from optuna.trial import TrialState

from nas import interrupts
from nas.engine.loader import Split, batches
from nas.search.execution.worker import run_worker
from nas.search.experiment.study import create_study
from nas.search.record import TrialRecord
from tests.test_study import finished, synthetic_config


def send(signum):
    os.kill(os.getpid(), signum)


def test_a_signal_is_raised_by_check_not_where_it_arrives():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts.deferred():
        send(signal.SIGINT)
        assert sum(range(10_000)) == 49_995_000  # code runs on; nothing is raised here
        with pytest.raises(KeyboardInterrupt) as e:
            interrupts.check()
        assert type(e.value) is KeyboardInterrupt
        interrupts.check()  # raised once
        send(signal.SIGTERM)
        with pytest.raises(interrupts.Terminated):
            interrupts.check()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_second_ctrl_c_raises_at_once_a_second_sigterm_does_not():
    with interrupts.deferred():
        send(signal.SIGTERM)
        send(signal.SIGTERM)  # a parent relaying the terminal's Ctrl-C to its workers
        with pytest.raises(interrupts.Terminated):
            interrupts.check()
        send(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt) as e:
            send(signal.SIGINT)
        assert "check" not in [f.name for f in traceback.extract_tb(e.tb)]
        interrupts.check()  # the forced one took the noted one with it


def test_an_interrupt_after_the_last_check_is_raised_when_the_outer_block_ends():
    with pytest.raises(interrupts.Terminated), interrupts.deferred():
        with interrupts.deferred():  # nested: the outer block owns the handlers
            send(signal.SIGTERM)
        reached = True
    assert reached
    interrupts.check()  # nothing left pending outside


def test_batches_stop_at_the_next_batch():
    split = Split(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
    seen = []
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        for _, y in batches(split, 3, shuffle=False, on_batch=interrupts.check):
            seen.append(y.tolist())
            send(signal.SIGINT)
    assert seen == [[0, 1, 2]]


def test_ctrl_c_during_a_storage_write_lands_at_the_next_batch_and_the_trial_is_given_back(
        tmp_path, monkeypatch):
    import nas.search.record as record_module

    cfg = synthetic_config(tmp_path, trials=3)
    study = create_study(cfg)
    write, writes = record_module.set_user_attrs, []

    def signal_mid_write(trial, attrs):
        if "hash" in attrs and not writes:  # the pattern is built; training comes next
            send(signal.SIGINT)
            write(trial, attrs)
            writes.append("hash")  # the write went through
        else:
            write(trial, attrs)

    monkeypatch.setattr(record_module, "set_user_attrs", signal_mid_write)
    with pytest.raises(KeyboardInterrupt) as e:
        run_worker(cfg, study=study, progress=False)
    frames = [f.name for f in traceback.extract_tb(e.tb)]
    assert frames[-2:] == ["batches", "check"]  # raised by the first batch, not by the write
    assert writes == ["hash"]
    [given_back] = finished(study, TrialState.FAIL)
    r = TrialRecord.from_trial(given_back)
    assert (r.fail_reason, r.requeued, r.hash is not None) == ("interrupted", True, True)
    monkeypatch.undo()
    assert run_worker(cfg, study=study, progress=False).trials == 3
    assert len(finished(study)) == 3


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a shell's background job
    try:
        with interrupts.deferred():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            send(signal.SIGINT)
            interrupts.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_stops_sampling_at_the_next_key(tmp_path):
    """F8: a space with thousands of keys sampled for minutes with no safe point (SIGTERM was
    ignored for 11 minutes); now every suggestion is one."""
    import optuna

    from nas.search.execution.objective import Objective

    cfg = synthetic_config(tmp_path, search_space={"name": "free", "layers": [40]})
    objective = Objective(cfg)
    trial = optuna.create_study().ask()
    with interrupts.deferred():
        send(signal.SIGTERM)
        with pytest.raises(interrupts.Terminated):
            objective.pattern_for(trial, TrialRecord(slot="search"))
    assert trial.params == {}  # stopped before its first key was written


def test_the_free_space_refuses_more_keys_than_a_trial_can_write():
    from search_spaces import PatternError, make_space

    assert make_space("free", [60]).layers == (60,)
    with pytest.raises(PatternError, match="11476 keys at layers \\[150\\].*at most 2500"):
        make_space("free", [150])
