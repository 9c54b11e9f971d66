"""What keeps large studies fast: the one-pass snapshot that read-only commands load, and the
even samples that figures draw."""
import json
import math
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from nas.errors import UserError
from nas.results.report import search_view
from nas.search.storage.backends import load_snapshot, open_storage
from nas.stats import thin
from tests.testing import ENV, STORAGES, run_cli, tiny_config, tiny_raw, url_of, write_toml


def _varied_study(url: str) -> str:
    """A study with every kind of thing a trial stores: params of three distributions, user
    and system attrs, intermediate values, infinite and finite values, and every state."""
    name = f"snap-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=open_storage(url),
                                directions=["maximize", "minimize"])
    study.set_user_attr("config", {"a": [1, 2]})
    for i in range(12):
        trial = study.ask({"x": FloatDistribution(0, 1), "k": IntDistribution(1, 9),
                           "c": CategoricalDistribution(["a", "b", None])})
        trial.set_user_attr("hash", f"h{i}")
        trial.set_user_attr("spec", {"nested": [i, {"deep": i * 0.5}]})
        trial.storage.set_trial_system_attr(trial._trial_id, "slot", i)
        study._storage.set_trial_intermediate_value(trial._trial_id, 0, 0.1 * i)
        study._storage.set_trial_intermediate_value(trial._trial_id, 1, -math.inf)
        state = [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, None][i % 4]
        if state == TrialState.COMPLETE:
            study.tell(trial, [0.5 + 0.01 * i, math.inf if i == 4 else float(i)])
        elif state is not None:
            study.tell(trial, state=state)
    return name


def test_a_snapshot_reads_every_trial_as_optuna_does(storage_url):
    name = _varied_study(storage_url)
    live = optuna.load_study(study_name=name, storage=open_storage(storage_url))
    snap = load_snapshot(name, storage_url)
    want = live.get_trials(deepcopy=False)
    assert snap.get_trials(deepcopy=False) == want
    assert {t.state for t in want} == {TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED,
                                       TrialState.RUNNING}
    assert snap.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) == \
        live.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert snap.user_attrs == live.user_attrs and snap.directions == live.directions
    assert snap.best_trials == live.best_trials
    # Without params: the same trials, bar their parameters and intermediate values (a
    # journal is replayed whole: it has them all the same).
    light = load_snapshot(name, storage_url, params=False).get_trials(deepcopy=False)
    for a, b in zip(light, want):
        assert (a.number, a.state, a.values, a.user_attrs, a.system_attrs, a.datetime_start) \
            == (b.number, b.state, b.values, b.user_attrs, b.system_attrs, b.datetime_start)
        if not storage_url.startswith("journal"):
            assert a.params == {} and a.intermediate_values == {}


def _chunk_writer(storage_url: str) -> str:
    """The name, in nas.search._optuna.queue, of the call that writes one chunk to this storage."""
    return "append_waiting_trials" if storage_url.startswith("journal") else "_insert"


def _journal_records(url: str, study: optuna.Study) -> list[dict]:
    """The journal's trial-creating records of ``study``, less the writer's and study's ids."""
    path = url.removeprefix("journal:///")
    records = [json.loads(line) for line in Path(path).read_text("utf-8").splitlines()]
    return [{k: v for k, v in r.items() if k not in ("worker_id", "study_id")}
            for r in records if r["op_code"] == 4 and r["study_id"] == study._study_id]


def test_trials_queued_in_bulk_are_those_optuna_queues(storage_url, monkeypatch):
    """`enqueue` writes what Optuna's enqueue_trial writes, numbered after the study's trials,
    a chunk per transaction (a journal: per locked append, its records Optuna's own), and the
    process that queued them reads them at once; a worker's claim takes them in order."""
    import nas.search._optuna.queue as queue
    from nas.search._optuna.reads import claim_next

    monkeypatch.setattr(queue, "CHUNK", 3)
    attrs = [{"slot": "search"}, {"slot": "baseline", "template": "log", "seed": 1}, {}] * 3
    studies, appends = {}, []
    for how in ("bulk", "optuna"):
        name = _varied_study(storage_url)   # 12 trials in every state before the queue
        study = optuna.load_study(study_name=name, storage=open_storage(storage_url))
        if how == "bulk":
            if storage_url.startswith("journal"):
                backend = study._storage._backend
                monkeypatch.setattr(backend, "append_logs", lambda logs, real=backend.append_logs:
                                    appends.append(len(logs)) or real(logs))
            queue.enqueue(study, attrs)
            assert study.get_trials(deepcopy=False) == optuna.load_study(
                study_name=name, storage=open_storage(storage_url)).get_trials(deepcopy=False)
        else:
            for a in attrs:
                study.enqueue_trial({}, user_attrs=a)
        studies[how] = optuna.load_study(study_name=name, storage=open_storage(storage_url))
    bulk, optunas = (s.get_trials(deepcopy=False)[12:] for s in studies.values())
    assert len(bulk) == len(optunas) == len(attrs)
    for a, b in zip(bulk, optunas):
        assert (a.number, a.state, a.params, a.distributions, a.user_attrs, a.system_attrs,
                a.datetime_start, a.datetime_complete, a.values, a.intermediate_values) == \
            (b.number, b.state, b.params, b.distributions, b.user_attrs, b.system_attrs,
             b.datetime_start, b.datetime_complete, b.values, b.intermediate_values)
    if storage_url.startswith("journal"):
        assert appends == [3, 3, 3]
        assert _journal_records(storage_url, studies["bulk"])[12:] == \
            _journal_records(storage_url, studies["optuna"])[12:]
    else:
        claimed = claim_next(studies["bulk"])
        assert claimed is not None and claimed._trial_id == bulk[0]._trial_id


def test_a_trial_another_process_adds_between_two_chunks_keeps_its_own_number(storage_url,
                                                                               monkeypatch):
    """A worker re-queues a trial (Optuna's add_trial, no lock) between two of a start's
    chunks: every trial keeps a number of its own, in order."""
    import nas.search._optuna.queue as queue

    monkeypatch.setattr(queue, "CHUNK", 2)
    name = _varied_study(storage_url)
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url))
    other = optuna.load_study(study_name=name, storage=open_storage(storage_url))
    real_write = getattr(queue, _chunk_writer(storage_url))

    def write_then_another_adds(*args, **kwargs):
        after = real_write(*args, **kwargs)
        other.enqueue_trial({}, user_attrs={"by": "other"})
        return after

    monkeypatch.setattr(queue, _chunk_writer(storage_url), write_then_another_adds)
    queue.enqueue(study, [{"k": k} for k in range(7)])
    for seen in (study, optuna.load_study(study_name=name, storage=open_storage(storage_url))):
        trials = seen.get_trials(deepcopy=False)
        assert [t.number for t in trials] == list(range(12 + 7 + 4))
        ids = [t._trial_id for t in trials]
        assert ids == sorted(ids)   # numbered in the order they were written
        assert [t.user_attrs.get("k") for t in trials[12:] if "by" not in t.user_attrs] == \
            list(range(7))
        assert [t.number for t in trials if "by" in t.user_attrs] == [14, 17, 20, 22]


def test_ctrl_c_while_a_chunk_is_written_stops_the_queue_after_that_chunk(storage_url,
                                                                          monkeypatch):
    import nas.search._optuna.queue as queue

    monkeypatch.setattr(queue, "CHUNK", 4)
    study = optuna.create_study(study_name=f"q-{uuid.uuid4().hex[:8]}",
                                storage=open_storage(storage_url))
    real_write = getattr(queue, _chunk_writer(storage_url))

    def interrupted_while_writing(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(queue, _chunk_writer(storage_url), interrupted_while_writing)
    with pytest.raises(KeyboardInterrupt):
        queue.enqueue(study, [{"k": k} for k in range(10)])
    stored = optuna.load_study(study_name=study.study_name, storage=open_storage(storage_url))
    assert [t.user_attrs["k"] for t in stored.trials] == [0, 1, 2, 3]


def test_a_queue_of_more_than_a_chunk_shows_a_progress_bar(tmp_path, monkeypatch, capsys):
    import nas.search._optuna.queue as queue

    monkeypatch.setattr(queue, "CHUNK", 2)
    study = optuna.create_study(study_name="q", storage=open_storage(url_of("journal",
                                                                             tmp_path)))
    for n, progress in ((2, True), (5, False), (5, True)):
        queue.enqueue(study, [{"k": k} for k in range(n)], progress=progress)
        shown = capsys.readouterr().err
        assert ("queueing" in shown and f"{n}/{n}" in shown) == (n > 2 and progress), shown
    assert len(study.trials) == 12


def test_a_journal_queue_waits_while_another_process_appends(tmp_path, monkeypatch):
    """Each chunk is appended under the journal's file lock: while another process holds it
    (mid-append), nothing of the queue is written; once it lets go, the queue is."""
    from optuna.storages.journal import JournalFileSymlinkLock

    import nas.search._optuna.queue as queue

    url = url_of("journal", tmp_path)
    study = optuna.create_study(study_name="q", storage=open_storage(url))
    lock = study._storage._backend._lock
    asking, real_acquire = threading.Event(), lock.acquire
    monkeypatch.setattr(lock, "acquire", lambda: asking.set() or real_acquire())
    other = JournalFileSymlinkLock(url.removeprefix("journal:///"))
    other.acquire()
    try:
        queuing = threading.Thread(target=queue.enqueue, args=(study, [{"k": 0}, {"k": 1}]))
        queuing.start()
        assert asking.wait(30)
        queuing.join(0.5)
        assert queuing.is_alive() and _journal_records(url, study) == []
    finally:
        other.release()
    queuing.join(30)
    assert [t.user_attrs for t in study.trials] == [{"k": 0}, {"k": 1}]


def _commits(study: optuna.Study) -> list[int]:
    """A list that grows by one at each commit the study's database sees (none: a journal)."""
    from sqlalchemy import event

    from nas.search._optuna.api import storage_of
    from nas.search._optuna.rdb import rdb_of

    commits: list[int] = []
    backend = rdb_of(storage_of(study))
    if isinstance(backend, optuna.storages.RDBStorage):
        event.listen(backend.engine, "commit", lambda _connection: commits.append(1))
    return commits


def test_a_trials_keys_and_record_are_each_written_in_one_transaction(storage_url, tmp_path):
    """A worker writes the keys its space suggests in one transaction and each record in one
    (Optuna commits every key and attr apart: ~45 commits a trial), storing exactly what
    Optuna's writes one at a time store."""
    from nas.search._optuna.api import params_in_one_transaction
    from nas.search.record import TrialRecord, record

    space = tiny_config(tmp_path).search_space.build()
    fields = {"hash": "ab12", "seed": 3, "connections": 17, "mean_distance": 1.5,
              "spec": {"blocks": [[0, 1]]}, "val_curve": [0.5, 0.6], "status": "ok"}
    stored, commits = {}, {}
    for how in ("together", "apart"):
        study = optuna.create_study(study_name=f"tx-{how}-{uuid.uuid4().hex[:8]}",
                                    storage=open_storage(storage_url),
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        trial = study.ask()
        counted = _commits(study)
        if how == "together":
            with params_in_one_transaction(trial):
                pattern = space.suggest(trial)
            record(trial, **fields)
        else:
            pattern = space.suggest(trial)
            for key, value in TrialRecord(**fields).to_user_attrs().items():
                trial.set_user_attr(key, value)
        commits[how] = len(counted)
        assert trial.storage is study._storage
        assert trial.user_attrs == TrialRecord(**fields).to_user_attrs()  # the live trial knows
        done = study.tell(trial, 0.5)
        stored[how] = (pattern.hash, done.params, done.distributions, done.user_attrs)
    assert stored["together"] == stored["apart"] and len(stored["apart"][1]) > 10
    if not storage_url.startswith("journal"):
        assert commits == {"together": 2, "apart": len(stored["apart"][1]) + len(fields)}


@pytest.mark.parametrize("kind", [k for k in STORAGES if k != "journal"])  # journals: Optuna's
def test_keys_suggested_before_an_error_are_stored_and_before_an_interrupt_are_not(kind,
                                                                                    tmp_path):
    from nas.search._optuna.api import params_in_one_transaction

    study = optuna.create_study(study_name=f"tx-{uuid.uuid4().hex[:8]}",
                                storage=open_storage(url_of(kind, tmp_path)))
    for error, kept in ((ValueError, {"a", "b"}), (KeyboardInterrupt, set())):
        trial = study.ask()
        with pytest.raises(error), params_in_one_transaction(trial):
            trial.suggest_float("a", 0.0, 1.0)
            trial.suggest_categorical("b", ["x", "y"])
            raise error("the space refused the pattern")
        assert trial.storage is study._storage
        assert set(study._storage.get_trial(trial._trial_id).params) == kept
    # A key of another kind than the study's earlier trials gave it is refused, as Optuna
    # refuses it, and nothing of that trial is stored.
    trial = study.ask()
    with pytest.raises(ValueError, match="different distribution kind"), \
            params_in_one_transaction(trial):
        trial.suggest_float("c", 0.0, 1.0)
        trial.suggest_float("b", 0.0, 1.0)
    assert study._storage.get_trial(trial._trial_id).params == {}
    # So is one checked against the database's (another process: its cache knows nothing).
    fresh = optuna.load_study(study_name=study.study_name,
                              storage=open_storage(url_of(kind, tmp_path)))
    trial = fresh.ask()
    with pytest.raises(ValueError, match="different distribution kind"), \
            params_in_one_transaction(trial):
        trial.suggest_float("b", 0.0, 1.0)
    assert fresh._storage.get_trial(trial._trial_id).params == {}
    # The block's own error is the one raised when its params cannot be stored either.
    trial = study.ask()
    with pytest.raises(RuntimeError, match="the space's own") as raised, \
            params_in_one_transaction(trial):
        trial.suggest_float("b", 0.0, 1.0)
        raise RuntimeError("the space's own error")
    assert any("its params were not stored (ValueError" in n for n in raised.value.__notes__)


@pytest.mark.parametrize("kind", [k for k in STORAGES if k != "journal"])
def test_attrs_written_together_overwrite_as_optunas_do_and_spare_a_finished_trial(kind,
                                                                                  tmp_path):
    from nas.search._optuna.api import set_user_attrs

    study = optuna.create_study(study_name=f"ua-{uuid.uuid4().hex[:8]}",
                                storage=open_storage(url_of(kind, tmp_path)))
    trial = study.ask()
    set_user_attrs(trial, {"a": 1, "b": [1, 2]})
    set_user_attrs(trial, {"b": {"c": None}, "d": "x"})
    stored = study._storage.get_trial(trial._trial_id).user_attrs
    assert stored == trial.user_attrs == {"a": 1, "b": {"c": None}, "d": "x"}
    study.tell(trial, 0.5)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(trial, {"a": 2})
    assert study._storage.get_trial(trial._trial_id).user_attrs["a"] == 1


def test_a_snapshot_gives_local_times_as_optuna_does(tmp_path, monkeypatch):
    """Optuna stores naive UTC and returns naive local time; so does the snapshot."""
    url = f"sqlite:///{tmp_path}/s.db"
    name = _varied_study(url)
    monkeypatch.setenv("TZ", "Asia/Kathmandu")   # UTC+5:45: no machine's clock by chance
    time.tzset()
    try:
        live = optuna.load_study(study_name=name, storage=open_storage(url))
        assert load_snapshot(name, url).get_trials(deepcopy=False) == \
            live.get_trials(deepcopy=False)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_snapshot_refuses_to_write_and_leaves_the_study_alone(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    name = _varied_study(url)
    snap = load_snapshot(name, url)
    with pytest.raises(UserError, match="read-only"):
        snap.set_user_attr("x", 1)
    with pytest.raises(UserError, match="read-only"):
        snap.ask()
    live = optuna.load_study(study_name=name, storage=open_storage(url))
    assert len(live.trials) == 12 and "x" not in live.user_attrs


def test_thin_keeps_all_up_to_the_limit_then_an_even_sample_and_what_it_must():
    assert thin(5, 10) == [0, 1, 2, 3, 4]
    picked = thin(1000, 100, keep=[7, 999, 5000])
    assert picked == sorted(set(picked)) and {7, 999} <= set(picked) and 5000 not in picked
    assert set(range(0, 1000, 10)) <= set(picked) and len(picked) == 102


def test_the_thinned_history_keeps_the_exact_best_so_far_line():
    rng = np.random.default_rng(0)
    study = optuna.create_study(direction="maximize")
    for v in rng.normal(size=300):
        study.add_trial(optuna.trial.create_trial(value=float(v)))
    view = search_view(study, limit=40)
    shown = view.study.get_trials(deepcopy=False)
    assert len(shown) < 60 and view.note.startswith(f"{len(shown)} of 300 trials")

    # Values are distinct: each shown trial is the original of the same value, in order, and
    # the running best over the shown trials is the full study's at every one of them.
    position = {t.values[0]: t.number for t in study.trials}
    originals = [position[t.values[0]] for t in shown]
    assert originals == view.numbers == sorted(originals)
    values = [t.values[0] for t in study.trials]
    full_best = np.maximum.accumulate(values)
    assert list(np.maximum.accumulate([t.values[0] for t in shown])) == \
        [full_best[i] for i in originals]
    assert search_view(study, limit=None) == (study, list(range(300)), "")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("kind", [k for k in STORAGES if k != "journal"])
def test_workers_through_a_storage_proxy_finish_exactly_the_study(tmp_path, kind):
    """Two workers that reach the database only through `skipnas storage-proxy` claim every
    queued slot once: exactly N completed trials, none run twice; queueing through the proxy
    (which cannot lock) is refused with one clear line."""
    import subprocess
    import sys

    from nas.search.config import load_config

    n, port = 6, _free_port()
    database = url_of(kind, tmp_path)
    config = write_toml(tmp_path / "c.toml", tiny_raw(tmp_path, name=f"proxy-{uuid.uuid4().hex}",
                                                       trials=n, storage=database))
    queued = run_cli("study", "start", str(config), "--queue-only")  # on the database itself
    assert queued.returncode == 0 and f"{n} trials queued; no worker started here" \
        in queued.stdout, queued.stderr
    proxy = subprocess.Popen([sys.executable, "-m", "nas.cli", "storage-proxy", "--storage",
                              database, "--port", str(port)], env=ENV, stderr=subprocess.PIPE,
                             text=True)
    try:
        url = f"grpc://127.0.0.1:{port}"
        workers = [subprocess.Popen([sys.executable, "-m", "nas.cli", "worker", str(config),
                                     "--storage", url, "-q"], env=ENV, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for w in workers:
            out, err = w.communicate(timeout=300)
            assert w.returncode == 0, err
        refused = run_cli("study", "start", str(config), "--storage", url, "-q")
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"skipnas: error: {url}: a storage proxy cannot lock the study while trials are "
            f"queued; run `study start`, `confirm` and `fidelity` with the database's own URL "
            f"(--storage), and workers through the proxy"]
    finally:
        proxy.terminate()
        _, proxy_err = proxy.communicate(timeout=60)
    assert proxy.returncode == 128 + 15 and "storage proxy for" in proxy_err, proxy_err
    study = optuna.load_study(study_name=load_config(config).name,
                              storage=open_storage(database))
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials].count(TrialState.COMPLETE) == n
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]


def test_a_storage_proxy_that_does_not_answer_is_one_line(monkeypatch):
    import nas.search.storage.proxy as proxy

    monkeypatch.setattr(proxy, "GRPC_READY_SECONDS", 0.5)
    port = _free_port()
    with pytest.raises(UserError, match=f"no storage proxy answers at 127.0.0.1:{port} within "
                                        f"0.5 s; start one with `skipnas storage-proxy"):
        open_storage(f"grpc://127.0.0.1:{port}")
    with pytest.raises(UserError, match="use grpc://HOST:PORT"):
        open_storage("grpc://nohost")


def test_reading_a_study_leaves_the_garbage_collector_as_it_was(tmp_path):
    import gc

    from nas.search._optuna.reads import gc_paused

    for enabled in (True, False):
        gc.enable() if enabled else gc.disable()
        try:
            with gc_paused():
                assert not gc.isenabled()
            with pytest.raises(ValueError), gc_paused():
                raise ValueError("a read that fails")
            assert gc.isenabled() == enabled
        finally:
            gc.enable()


def test_a_workers_reads_of_trials_in_a_state_take_the_state_index_on_sqlite(tmp_path):
    """SQLite has no statistics: asked to order the RUNNING trials by id, it walked the study's
    whole trial index (21 ms at 100k trials, several times a trial). Every query on the trials
    table that a worker's state reads make must search `skipnas_trial_state`."""
    from sqlalchemy import event

    from nas.search._optuna.api import storage_of
    from nas.search._optuna.rdb import rdb_of
    from nas.search._optuna.reads import StudyReads
    from nas.search._optuna.schema import ensure_indexes

    url = url_of("sqlite", tmp_path)
    study = optuna.load_study(study_name=_varied_study(url), storage=open_storage(url))
    ensure_indexes(storage_of(study))
    engine = rdb_of(storage_of(study)).engine
    seen = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and \
                "FROM trials" in statement.split("WHERE")[0]:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        reads = StudyReads(study)
        running = reads.trials((TrialState.RUNNING,), keys=("hash",))
        failed = reads.trials((TrialState.FAIL,), keys=())
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert [t.number for t in running] == [3, 7, 11] and [t.number for t in failed] == [1, 5, 9]
    assert seen
    with engine.connect() as db:
        for statement, parameters in seen:
            plan = " ".join(str(row) for row in db.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters))
            assert "skipnas_trial_state" in plan, (statement, plan)
