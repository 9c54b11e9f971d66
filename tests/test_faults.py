"""Studies never hang and never double-run: workers killed, paused, interrupted or terminated on
every storage (journal file, SQLite, PostgreSQL), atomic claims, a worker with another config.
Each test is bounded in time and asserts exactly N COMPLETE, no slot run twice, every process
exited."""
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from nas.errors import UserError
from nas.search._optuna.api import first_of_slot
from nas.search.config import load_config
from nas.search.execution.worker import run_worker
from nas.search.experiment.study import create_study
from nas.search.record import TrialRecord
from nas.search.storage.backends import load_study, open_storage
from tests.testing import ENV, POSTGRES, STORAGES, stacks, tiny_config, tiny_raw, url_of, write_toml

N = 6


def write_config(path, storage, name=None, lr=0.1, trials=N):
    """A tiny study's TOML (synthetic data, 1 s heartbeats) on ``storage``, its name fresh."""
    name = name or f"fault-{os.getpid()}-{time.monotonic_ns()}"
    return write_toml(path, tiny_raw(path.parent, name=name, trials=trials, storage=storage,
                                     training={"lr": lr}))


def skipnas(*argv):
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *argv, "-q"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_mid_trial(study, procs, timeout=120):
    """(trial number, process) of a trial that one of ``procs`` is training right now."""
    pids = {str(p.pid): p for p in procs}
    deadline = time.time() + timeout
    while time.time() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            r = TrialRecord.from_trial(t)
            pid = (r.worker or ":").split(":")[1]
            if pid in pids and r.hash:  # its pattern is built: it is training
                return t.number, pids[pid]
        time.sleep(0.1)
    raise AssertionError("no trial started")


def finish(procs, timeout=240):
    """Wait for every process; returns their (returncode, stderr). One still running after
    ``timeout`` seconds fails the test with its threads' stacks."""
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{p.args} still ran after {timeout} s:\n{stacks(p)}") from None
        out.append((p.returncode, err))
    return out


def check_exactly_n(study, n=N):
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n, Counter(t.state.name for t in trials)
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    # No slot ran twice: every COMPLETE trial descends from a different original slot (a
    # retried trial names the one it replaces in `failed_trial`).
    origins = [first_of_slot(t) for t in complete]
    assert len(origins) == len(set(origins))
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    assert not set(failed) & {t.number for t in complete}
    return trials


def two_workers_mid_trial(storage_url, tmp_path):
    """A study of N trials, two workers on it, and (trial number, worker) of one mid-trial."""
    config = write_config(tmp_path / "c.toml", storage_url)
    study = create_study(load_config(config))
    workers = [skipnas("worker", str(config)) for _ in range(2)]
    return config, study, workers, *wait_mid_trial(study, workers)


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_every_process_exits(storage_url, tmp_path):
    config, study, workers, number, victim = two_workers_mid_trial(storage_url, tmp_path)
    victim.send_signal(signal.SIGKILL)
    results = finish(workers)
    assert all(rc == 0 for (rc, _), w in zip(results, workers) if w is not victim), results
    trials = check_exactly_n(study)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [number]
    retried = [t for t in trials if t.number != number and first_of_slot(t) == number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == failed[0].params
    # A restart finds nothing to do and exits.
    restart = skipnas("study", "start", str(config))
    out, err = restart.communicate(timeout=120)
    assert restart.returncode == 0 and "ran 0 trials" in out, err


@pytest.mark.slow
def test_sigint_and_sigterm_fail_the_trial_requeue_it_and_exit_cleanly(storage_url, tmp_path):
    config = write_config(tmp_path / "c.toml", storage_url, trials=10)
    study = create_study(load_config(config))
    starter, worker, other = (skipnas("study", "start", str(config)),
                              skipnas("worker", str(config)), skipnas("worker", str(config)))
    first, proc = wait_mid_trial(study, [starter])
    starter.send_signal(signal.SIGINT)
    second, _ = wait_mid_trial(study, [worker])
    worker.send_signal(signal.SIGTERM)
    (rc_int, err_int), (rc_term, err_term), (rc_other, _) = finish([starter, worker, other])
    assert (rc_int, rc_term, rc_other) == (130, 143, 0), (err_int, err_term)
    queued = ("; the trial in progress was marked interrupted and queued again: run the same "
              "command (or `skipnas worker CONFIG`) to go on")
    assert err_int.strip().splitlines()[-1] == "skipnas: interrupted" + queued
    assert err_term.strip().splitlines()[-1] == "skipnas: terminated" + queued
    assert "Traceback" not in err_int + err_term
    trials = check_exactly_n(study, 10)
    for number in (first, second):
        r = TrialRecord.from_trial(trials[number])
        assert trials[number].state == TrialState.FAIL
        assert r.fail_reason == "interrupted" and r.requeued
        assert [t.state for t in trials if t.number != number and first_of_slot(t) == number] == \
            [TrialState.COMPLETE]


def pause_outside_a_transaction(proc, url, timeout=60):
    """SIGSTOP ``proc`` at a moment it holds no SQLite write lock: a process stopped inside a
    transaction (its heartbeat's, while it trains) holds every other one until it goes on (F3:
    they wait, by design), this test's reads included."""
    import sqlite3

    deadline = time.time() + timeout
    while True:
        proc.send_signal(signal.SIGSTOP)
        if not url.startswith("sqlite"):
            return
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1], timeout=0.2,
                                                isolation_level=None)) as db:
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
                return
            except sqlite3.OperationalError:  # held, by it or by the other worker
                assert time.time() < deadline, "the write lock was never free"
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)


@pytest.mark.slow
def test_a_paused_worker_drops_its_taken_over_trial_quietly(storage_url, tmp_path):
    _, study, workers, number, paused = two_workers_mid_trial(storage_url, tmp_path)
    time.sleep(0.5)
    pause_outside_a_transaction(paused, storage_url)
    deadline = time.time() + 120  # the other worker fails it after 3 silent heartbeats
    while study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
        assert time.time() < deadline
        time.sleep(0.2)
    paused.send_signal(signal.SIGCONT)
    results = finish(workers)
    assert [rc for rc, _ in results] == [0, 0], results
    err = dict(zip(workers, [e for _, e in results]))[paused]
    assert "Traceback" not in err and f"trial {number} was failed and queued again" in err
    check_exactly_n(study)


@pytest.mark.parametrize("kind", [k for k in STORAGES if k != "journal"])
@pytest.mark.slow
def test_death_between_claim_and_first_heartbeat_is_recovered(kind, tmp_path):
    url = {"sqlite": f"sqlite:///{tmp_path}/s.db", "postgres": POSTGRES}[kind]
    config = write_config(tmp_path / "c.toml", url)
    cfg = load_config(config)
    create_study(cfg)
    code = ("import os, sys; from nas.search.storage.backends import load_study;"
            "from nas.search._optuna.reads import claim_next;"
            f"s = load_study({cfg.name!r}, {url!r}); print(claim_next(s)); os._exit(0)")
    claimed = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True,
                             text=True, check=True, timeout=60).stdout.strip()
    assert claimed != "None"
    (rc, err), = finish([skipnas("worker", str(config))], timeout=240)
    assert rc == 0, err
    check_exactly_n(load_study(cfg.name, url))


@pytest.mark.slow
def test_claims_are_atomic_across_processes(storage_url, tmp_path):
    config = write_config(tmp_path / "c.toml", storage_url, trials=120)
    cfg = load_config(config)
    create_study(cfg)
    code = ("from nas.search.storage.backends import load_study;"
            "from nas.search._optuna.reads import claim_next;"
            f"s = load_study({cfg.name!r}, {storage_url!r}); got = [];\n"
            "while (t := claim_next(s)) is not None: got.append(t.number)\n"
            "print(*got)")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    claims = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        claims += out.split()
    assert len(claims) == 120 and len(set(claims)) == 120


@pytest.mark.slow
def test_a_worker_with_another_config_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    a = write_config(tmp_path / "a.toml", url, name="same")
    b = write_config(tmp_path / "b.toml", url, name="same", lr=0.5)
    study = create_study(load_config(a))
    (rc, err), = finish([skipnas("worker", str(b))], timeout=120)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "training.lr is 0.1 in the study, 0.5 here" in err
    assert all(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))


@pytest.mark.slow
def test_passwords_never_reach_output():
    url = "postgresql+psycopg://alice:s3cretPW@127.0.0.1:1/db"
    for argv in (["study", "status", "x", "--storage", url],
                 ["analyze", "x", "--storage", url],
                 ["study", "status", "x", "--storage", "mongodb://bob:hunter2@h/db"]):
        out = subprocess.run([sys.executable, "-m", "nas.cli", *argv], env=ENV,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "***" in out.stderr
        assert "s3cretPW" not in out.stdout + out.stderr
        assert "hunter2" not in out.stdout + out.stderr


def test_a_study_name_cannot_reach_other_files(tmp_path):
    import sqlite3

    victim = tmp_path / "victim.db"
    with sqlite3.connect(victim) as db:
        db.execute("CREATE TABLE mine (x)")
    before = victim.read_bytes()
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    for argv in (["study", "status", "../../victim"], ["export", "../victim"],
                 ["study", "status", "victim", "--storage", f"sqlite:///{victim}"]):
        out = subprocess.run([sys.executable, "-m", "nas.cli", *argv], env=ENV, cwd=work,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert victim.read_bytes() == before


@pytest.mark.skipif(not POSTGRES, reason="scripts/test.sh starts PostgreSQL")
@pytest.mark.slow
def test_a_worker_stopped_inside_a_transaction_does_not_block_the_study(tmp_path):
    """A process stopped while it holds the row lock of its trial (inside a transaction) is cut
    off by PostgreSQL after IDLE_IN_TRANSACTION_SECONDS; the study then recovers its trial."""
    from sqlalchemy import text

    from nas.search._optuna.api import storage_of
    from nas.search._optuna.reads import claim_next
    from nas.search.storage.backends import IDLE_IN_TRANSACTION_SECONDS, open_storage

    config = write_config(tmp_path / "c.toml", POSTGRES, trials=2)
    cfg = load_config(config)
    study = create_study(cfg)
    claimed = claim_next(study)  # this process is the stuck worker: its trial is RUNNING...
    assert claimed is not None
    engine = open_storage(POSTGRES).engine
    stuck = engine.connect()
    stuck.begin()
    stuck.execute(text("SELECT trial_id FROM trials WHERE trial_id = :t FOR UPDATE"),
                  {"t": claimed._trial_id})  # ... and holds the trial's row lock, never committing
    clock = time.time()
    (rc, err), = finish([skipnas("worker", str(config))], timeout=IDLE_IN_TRANSACTION_SECONDS + 120)
    assert rc == 0, err
    check_exactly_n(study, 2)
    assert storage_of(study).get_trial(claimed._trial_id).state == TrialState.FAIL
    assert time.time() - clock >= IDLE_IN_TRANSACTION_SECONDS - 5  # it waited for the cut-off
    stuck.invalidate()


@pytest.mark.skipif(not POSTGRES, reason="scripts/test.sh starts PostgreSQL")
def test_a_long_read_on_postgresql_is_not_cut_off_but_a_paused_writer_is(monkeypatch):
    """N5: every session carried the idle-in-transaction timeout, so a read doing more Python
    work than it between two statements (read_trials parsing a large study's rows) was cut
    off. Only a transaction that writes or locks is cut off now (the timeout lowered to 1 s
    here, each pause 2 s)."""
    from sqlalchemy import text

    import nas.search._optuna.reads as reads
    import nas.search.storage.backends as storage
    from nas.search._optuna.rdb import rdb_of

    monkeypatch.setattr(storage, "IDLE_IN_TRANSACTION_SECONDS", 1)
    study = optuna.create_study(storage=open_storage(POSTGRES))
    study.enqueue_trial({}, user_attrs={"k": 1})
    engine = open_storage(POSTGRES).engine
    real_parsed = reads._parsed

    def parsed_slowly(*args, **kwargs):
        time.sleep(2)
        return real_parsed(*args, **kwargs)

    monkeypatch.setattr(reads, "_parsed", parsed_slowly)
    trials = reads.read_trials(rdb_of(study._storage), study._study_id)
    assert [t.user_attrs for t in trials] == [{"k": 1}]
    for holds in ("SELECT study_id FROM studies FOR UPDATE",
                  "UPDATE studies SET study_name = study_name WHERE study_id = -1"):
        with engine.connect() as db:
            db.execute(text(holds))
            time.sleep(2)
            with pytest.raises(sqlalchemy.exc.DBAPIError, match="idle-in-transaction"):
                db.execute(text("SELECT 1"))


@pytest.mark.parametrize("statement, writes", [
    ("SELECT trials.trial_id FROM trials WHERE trials.study_id = %(id)s", False),
    ("\n  with t as (select 1) select * from t", False),
    ("SELECT studies.study_id FROM studies WHERE studies.study_id = 1 FOR UPDATE", True),
    ("SELECT trial_id FROM trials WHERE trial_id = 3 FOR NO KEY UPDATE", True),
    ("SELECT trial_id FROM trials FOR KEY SHARE", True),
    ("SELECT pg_advisory_lock(42)", True),
    ("INSERT INTO trials (number) VALUES (1) RETURNING trials.trial_id", True),
    ("WITH x AS (DELETE FROM trials RETURNING 1) SELECT 1", True),
    ("update trials set state = 'FAIL'", True),
    ("CREATE INDEX IF NOT EXISTS i ON trials (state)", True),
    ("SHOW idle_in_transaction_session_timeout", True),  # not known to be a read: limited
])
def test_what_counts_as_a_statement_that_writes_or_locks(statement, writes):
    from nas.search.storage.backends import writes_or_locks

    assert writes_or_locks(statement) == writes


@pytest.mark.slow
def test_three_sqlite_workers_one_killed_the_starter_interrupted_and_restarted(tmp_path):
    n = 10
    url = f"sqlite:///{tmp_path}/s.db"
    config = write_config(tmp_path / "c.toml", url, trials=n)
    cfg = load_config(config)
    starter = skipnas("study", "start", str(config))
    deadline = time.time() + 120
    while True:  # the starter creates the study
        try:
            study = load_study(cfg.name, url)
            break
        except Exception:
            assert time.time() < deadline and starter.poll() is None
            time.sleep(0.2)
    workers = [skipnas("worker", str(config)) for _ in range(2)]
    killed, victim = wait_mid_trial(study, workers)
    victim.send_signal(signal.SIGKILL)
    interrupted, _ = wait_mid_trial(study, [starter])
    starter.send_signal(signal.SIGINT)
    (rc, err), = finish([starter])
    assert rc == 130 and "Traceback" not in err
    restart = skipnas("study", "start", str(config))
    survivor = next(w for w in workers if w is not victim)
    results = finish([restart, survivor])
    assert [rc for rc, _ in results] == [0, 0], results
    trials = check_exactly_n(study, n)
    # Under load the starter can be silent for 3 heartbeats before its Ctrl-C; then another
    # worker fails its trial as stale first, and the starter says so.
    reason = TrialRecord.from_trial(trials[interrupted]).fail_reason
    assert reason == "interrupted" or (
        reason is None and f"trial {interrupted} had already been failed as stale" in err), err
    for number in (killed, interrupted):
        assert trials[number].state == TrialState.FAIL
        assert [t.state for t in trials if t.number != number and first_of_slot(t) == number] == \
            [TrialState.COMPLETE]


@pytest.mark.slow
def test_study_start_with_workers_runs_them_all_and_a_sigterm_stops_every_one(tmp_path):
    """`--workers 2`: the starter and one spawned process share the study. SIGTERM to the
    starter gives back both running trials (failed "interrupted", queued again); a restart with
    two workers finishes exactly N, and the report counts both processes' trials."""
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", trials=8)
    study = create_study(load_config(config))
    starter = skipnas("study", "start", str(config), "--workers", "2")
    deadline = time.time() + 120
    while len({TrialRecord.from_trial(t).worker for t in study.get_trials(
            deepcopy=False, states=(TrialState.RUNNING,)) if TrialRecord.from_trial(t).hash}) < 2:
        assert time.time() < deadline, "two workers never trained at once"
        time.sleep(0.1)
    starter.send_signal(signal.SIGTERM)
    (rc, err), = finish([starter])
    assert rc == 143, err
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if TrialRecord.from_trial(t).fail_reason == "interrupted"]
    assert len(interrupted) >= 2 and all(TrialRecord.from_trial(t).requeued for t in interrupted)
    restart = skipnas("study", "start", str(config), "--workers", "2")
    out, err = restart.communicate(timeout=240)
    assert restart.returncode == 0, err
    trials = check_exactly_n(study, 8)
    done_after = [t for t in trials if t.state == TrialState.COMPLETE
                  and t.datetime_start > max(i.datetime_complete for i in interrupted)]
    assert f"ran {len(done_after)} trials" in out
    pids = {TrialRecord.from_trial(t).worker for t in done_after}
    assert len(pids) == 2, pids


@pytest.mark.slow
def test_a_torn_last_journal_record_is_repaired_at_every_byte(tmp_path, caplog):
    """A crash or a full disk mid-append leaves the journal's last line without its end; the
    next append used to be glued onto it and the study became unreadable."""
    cfg = load_config(write_config(tmp_path / "c.toml", f"journal:///{tmp_path}/j.log",
                                   trials=2))
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    data = (tmp_path / "j.log").read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1  # the last record: data[start:]
    for cut in range(start + 1, len(data)):
        journal = tmp_path / f"t{cut}.log"
        journal.write_bytes(data[:cut])
        storage = open_storage(f"journal:///{journal}")
        whole = cut == len(data) - 1  # only the newline lost: the record is kept
        assert journal.read_bytes() == (data if whole else data[:start])
        backups = list(tmp_path.glob(f"t{cut}.log.torn-*"))
        assert len(backups) == 1 and backups[0].read_bytes() == data[:cut]
        optuna.load_study(study_name=cfg.name, storage=storage).enqueue_trial({})
        again = optuna.load_study(study_name=cfg.name,
                                  storage=open_storage(f"journal:///{journal}"))
        assert len(again.trials) == len(study.trials) + 1
    assert "its last record was torn" in caplog.text
    # A clean journal is left alone; a file that is not a journal gives one clear error.
    open_storage(f"journal:///{tmp_path}/j.log")
    assert not list(tmp_path.glob("j.log.torn-*"))
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")
    with pytest.raises(UserError, match="not a readable Optuna journal"):
        open_storage(f"journal:///{notes}")


START_ONLY = ("import sys; from nas.search.config import load_config; "
              "from nas.search.experiment.study import create_study; "
              "create_study(load_config(sys.argv[1]))")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_starts_with_other_temporary_directories_still_exclude_each_other(tmp_path, kind):
    """N1: the start lock was a file in $TMPDIR, so two `study start`s whose processes have
    different TMPDIRs (two users, PrivateTmp, two containers on one study folder) queued the
    study twice. While this process holds the storage's lock, a start under another TMPDIR
    queues nothing; once it is released, exactly the configured trials."""
    from nas.search.storage.locks import file_lock

    url = url_of(kind, tmp_path)
    config = write_config(tmp_path / "c.toml", url, trials=40)
    name = load_config(config).name
    create_study(load_config(config))   # the study exists, its slots queued
    study = load_study(name, url)
    for t in study.get_trials(deepcopy=False)[20:]:  # as if a start had queued half of them
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    other_tmp = tmp_path / "other-tmp"
    other_tmp.mkdir()
    file = tmp_path / ("s.db" if kind == "sqlite" else "s.log")
    with file_lock(file):
        proc = subprocess.Popen([sys.executable, "-c", START_ONLY, str(config)],
                                env={**ENV, "TMPDIR": str(other_tmp)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()
        assert len(load_study(name, url).get_trials(deepcopy=False)) == 40  # nothing queued
    [(rc, err)] = finish([proc])
    assert rc == 0, err
    trials = load_study(name, url).get_trials(deepcopy=False)
    assert sum(t.state == TrialState.WAITING for t in trials) == 40


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORAGES)
def test_concurrent_starts_queue_every_slot_once(tmp_path, kind):
    """Four `study start` of one config at once (their enqueue step) on a fresh storage used
    to queue up to twice the slots (F1) and, on a fresh SQLite file, to race on creating the
    schema (F14)."""
    for rep in range(3):
        url = url_of(kind, tmp_path, f"s{rep}")
        config = write_config(tmp_path / f"c{rep}.toml", url, trials=120)
        procs = [subprocess.Popen([sys.executable, "-c", START_ONLY, str(config)], env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        for rc, err in finish(procs):
            assert rc == 0, err
        name = load_config(config).name
        assert len(load_study(name, url).get_trials(deepcopy=False)) == 120


def test_a_storage_opened_while_another_process_creates_its_schema_waits_for_it(tmp_path):
    """CI: a `study start` that looked at a fresh SQLite file while another one was creating
    Optuna's tables saw half a schema and refused it as "not an Optuna storage"."""
    import sqlite3
    import threading

    from nas.search.storage.locks import file_lock

    file = tmp_path / "s.db"
    opened: list[object] = []
    with file_lock(file):  # this process is creating the schema: one table so far
        with sqlite3.connect(file) as db:
            db.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY)")
        opener = threading.Thread(target=lambda: opened.append(open_storage(f"sqlite:///{file}")))
        opener.start()
        time.sleep(0.5)
        file.unlink()  # ... and now the whole of it
        optuna.storages.RDBStorage(f"sqlite:///{file}")
    opener.join(30)
    assert len(opened) == 1

    other = tmp_path / "notes.db"  # a finished file of something else is still refused
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(UserError, match="not an Optuna storage; refusing to write into it"):
        open_storage(f"sqlite:///{other}")


def test_a_complete_storage_opens_without_waiting_for_the_creation_lock(tmp_path):
    """64 workers opening one SQLite study queued for its lock file at start (up to 2 min):
    a file that holds Optuna's whole, stamped schema opens without it; one with every table
    but not yet stamped still waits."""
    import sqlite3
    import threading

    from optuna.storages._rdb import models

    from nas.search._optuna.schema import schema_complete
    from nas.search.storage.locks import file_lock

    done = tmp_path / "done.db"
    optuna.storages.RDBStorage(f"sqlite:///{done}")
    half = tmp_path / "half.db"
    models.BaseModel.metadata.create_all(sqlalchemy.create_engine(f"sqlite:///{half}"))
    with sqlite3.connect(half) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
    assert schema_complete(done) and not schema_complete(half)
    opened: dict[str, object] = {}
    with file_lock(done), file_lock(half):   # another process holds both lock files
        openers = [threading.Thread(target=lambda f=f: opened.setdefault(
            f.name, open_storage(f"sqlite:///{f}"))) for f in (done, half)]
        for t in openers:
            t.start()
        openers[0].join(20)
        assert "done.db" in opened and "half.db" not in opened
    openers[1].join(30)
    assert "half.db" in opened


@pytest.mark.parametrize("skew", [10, 600])
def test_liveness_compares_heartbeat_changes_never_clocks(monkeypatch, skew):
    """F15: heartbeat ages were one worker's clock minus another's, so a worker 10 s off lost
    healthy trials or failed others'. Now a trial is stale when its heartbeat has not changed
    for the grace period of the watcher's own monotonic clock."""
    import time as time_module

    from nas.search._optuna.api import storage_of, trial_id
    from nas.search.execution.liveness import HEARTBEAT, StaleSweep

    real = time_module.time
    monkeypatch.setattr(time_module, "time", lambda: real() + skew)  # this process runs ahead
    study = optuna.create_study()
    for _ in range(3):
        study.ask()
    ahead, behind, dead = (trial_id(t) for t in study.get_trials())
    storage, sweep = storage_of(study), StaleSweep(grace_seconds=1.0)
    failed, start = [], time.monotonic()
    while time.monotonic() - start < 3.0:
        storage.set_trial_system_attr(ahead, HEARTBEAT, real() + skew)  # other workers' clocks
        storage.set_trial_system_attr(behind, HEARTBEAT, real() - skew)
        failed += sweep(study, storage)
        time.sleep(0.1)
    assert failed == [2]  # only the trial whose heartbeat stopped
    states = [t.state for t in study.get_trials()]
    assert states[:3] == [TrialState.RUNNING, TrialState.RUNNING, TrialState.FAIL]
    assert states[3:] == [TrialState.WAITING]  # its slot queued again


@pytest.fixture
def locked_sqlite(tmp_path, monkeypatch):
    """An SQLite study storage, and ``hold(seconds)``: another process's write lock on it (as
    a worker stopped inside a transaction holds it) for that long, from a background thread."""
    import sqlite3
    import threading

    from nas.search.storage import locks

    monkeypatch.setattr(locks, "LOCK_NOTICE_SECONDS", 1.0)
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(storage=storage)

    def hold(seconds):
        holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None,
                                 check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        threading.Timer(seconds, holder.rollback).start()

    return study, hold


@pytest.mark.slow
def test_a_stopped_sqlite_lock_holder_is_waited_for_and_reported(locked_sqlite, caplog):
    """F3: a worker stopped while it held SQLite's write lock froze the others, which died with
    a StorageInternalError traceback after 120 s. Now they try again and again (here 4 tries
    of LOCK_TRY_SECONDS) and say so in one line when the wait is long and one when it ends."""
    study, hold = locked_sqlite
    hold(4.0)
    start = time.monotonic()
    study.enqueue_trial({})
    assert time.monotonic() - start >= 3.5
    assert len(study.trials) == 1
    waits = [r.getMessage() for r in caplog.records if "the write lock" in r.getMessage()]
    assert len(waits) == 2, waits
    assert re.search(r"has held the write lock for [12] s \(a stopped or hung process\?\)",
                     waits[0])
    assert "got the write lock after 4 s" in waits[1]


@pytest.mark.slow
def test_liveness_does_not_count_a_wait_for_the_sqlite_lock(locked_sqlite):
    """While another process holds the write lock, no worker can write its heartbeat; a sweep
    that waited for the lock used to fail healthy trials right after the wait."""
    from nas.search._optuna.api import storage_of, trial_id
    from nas.search.execution.liveness import HEARTBEAT, StaleSweep
    from nas.search.storage.sqlite import liveness_clock

    study, hold = locked_sqlite
    storage = storage_of(study)
    healthy = trial_id(study.ask())
    storage.set_trial_system_attr(healthy, HEARTBEAT, 1.0)
    sweep = StaleSweep(1.0, liveness_clock(storage))
    assert sweep(study, storage) == []
    hold(3.0)
    assert sweep(study, storage) == []  # it waited 3 s for the lock: the trial is not stale
    time.sleep(1.5)
    assert sweep(study, storage) == [0]  # 1.5 s of a free storage without a heartbeat: stale


def test_a_damaged_sqlite_file_is_one_line(tmp_path, capsys):
    """F6: a damaged page of the study's file was a DatabaseError traceback."""
    import sqlite3

    from nas.cli import main

    url = f"sqlite:///{tmp_path}/s.db"
    config = write_config(tmp_path / "c.toml", url, trials=2)
    name = create_study(load_config(config)).study_name
    with sqlite3.connect(tmp_path / "s.db") as db:
        root, = db.execute("SELECT rootpage FROM sqlite_master "
                           "WHERE name = 'trial_user_attributes'").fetchone()
        size, = db.execute("PRAGMA page_size").fetchone()
    with open(tmp_path / "s.db", "r+b") as f:  # the table's page overwritten
        f.seek((root - 1) * size)
        f.write(b"\xa5" * size)
    for argv in (["study", "status", name, "--storage", url], ["worker", str(config), "-q"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is a damaged SQLite file (database disk image is malformed)" \
            in err[0], err


@pytest.mark.slow
def test_a_full_disk_stops_an_sqlite_worker_with_one_line_and_loses_nothing(tmp_path,
                                                                             monkeypatch, capsys):
    """F5: a worker whose disk filled up died with a StorageInternalError traceback ("exceeding
    max length", misleading). Now: one line, exit 2, and the trial it was running is queued
    again by the next worker."""
    from sqlalchemy import event

    from nas.cli import main
    from nas.search.storage.sqlite import SQLiteStorage

    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", trials=3)
    study = create_study(load_config(config))
    opened = SQLiteStorage.__init__

    def on_a_full_disk(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        # The file may not grow by a page (SQLite's "database or disk is full", as on a full
        # disk): the first write that needs a new page fails.
        event.listen(self.engine, "connect",
                     lambda connection, _: connection.execute("PRAGMA max_page_count = 1"))

    with monkeypatch.context() as patch:
        patch.setattr(SQLiteStorage, "__init__", on_a_full_disk)
        assert main(["worker", str(config), "-q"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "cannot grow: the disk is full" in err[0], err
    assert main(["worker", str(config), "-q"]) == 0  # space freed: the study finishes
    check_exactly_n(study, 3)


def test_a_study_name_of_ten_thousand_characters_is_refused_in_one_line(tmp_path, capsys):
    """N6: a 10,000-character study name was accepted on SQLite with an explicit storage (a
    name also names files: NAME.db, its lock file, the NAME.features study)."""
    from nas.cli import main

    name = "a" * 10_000
    config = write_toml(tmp_path / "long.toml", tiny_raw(
        tmp_path, name=name, storage=f"sqlite:///{tmp_path}/s.db"))
    assert main(["study", "start", str(config), "-q"]) == 2
    err = capsys.readouterr().err
    assert "name: use at most 200 letters" in err and len(err) < 300
    assert not (tmp_path / "s.db").exists()
    assert main(["study", "status", name]) == 2
    err = capsys.readouterr().err
    assert "use at most 200" in err and "(10000 characters)" in err and len(err) < 300
    tiny_config(tmp_path, name="b" * 200)   # the longest name allowed
