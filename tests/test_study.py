"""Studies: config errors, end to end on SQLite, resume, dedup, baselines, status; and many
workers on a real PostgreSQL server with one killed mid-trial."""
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from optuna.trial import TrialState

from search_spaces import template_pattern
from nas.config import config_from_dict, load_config
from nas.errors import ConfigError, UserError
from nas.study import create_study, open_storage, run_worker, study_status

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def synthetic_config(tmp_path, **top):
    raw = {
        "name": "syn", "trials": 6, "storage": f"sqlite:///{tmp_path}/syn.db",
        "search_space": {"name": "offsets", "layers": [6]},
        "data": {"name": "synthetic", "train_size": 512, "val_size": 256},
        "architecture": {"growth": 4, "bottleneck": False},
        "training": {"epochs": 1, "batch_size": 32},
        "sampler": {"name": "random"},
        **top,
    }
    return config_from_dict(raw, "test.toml")


def finished(study, state=TrialState.COMPLETE):
    return [t for t in study.get_trials(deepcopy=False) if t.state == state]


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.search_space.build().budget > 0


@pytest.mark.parametrize("text, message", [
    ('name = "x"\ntrials = -1', "bad.toml: trials: must be >= 0"),
    ('name = "x"\n[training]\nepoch = 2', "bad.toml: training.epoch: unknown key"),
    ('name = "x"\n[sampler]\nname = "grid"', "bad.toml: sampler.name: expected one of"),
    ('name = "x"\n[search_space]\nlayers = [6]\nbudget = 3', "budget 3 impossible"),
    ('name = "x"\n[data]\nname = "imagenet"', "data.name: unknown dataset 'imagenet'"),
    ('name = "x"\n[pruner]\nname = "median"\n[sampler]\nname = "nsga2"', "pruner.name"),
    ('name = "x"\n[baselines]\ntemplates = ["loggg"]', "baselines.templates"),
    ('name = "x" trials', "bad.toml: not valid TOML"),
])
def test_config_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_bad_storage_url_is_clear():
    with pytest.raises(UserError, match="bad storage URL 'mongodb://x'"):
        open_storage("mongodb://x")
    with pytest.raises(UserError, match="cannot open storage"):
        open_storage("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_end_to_end_sqlite_resume_and_dedup(tmp_path):
    cfg = synthetic_config(tmp_path, baselines={"templates": ["log", "dense"], "seeds": [0, 1]})
    study = create_study(cfg)
    report = run_worker(cfg, study=study, progress=False)
    assert report.trials == 6 + 4
    done = finished(study)
    assert len(done) == 10 and not finished(study, TrialState.WAITING)
    for t in done:
        for key in ("spec", "hash", "connections", "mbd", "mean_distance", "params", "flops",
                    "train_seconds", "device"):
            assert key in t.user_attrs, key
    search = [t for t in done if "baseline" not in t.user_attrs]
    assert all(t.user_attrs["connections"] == 17 for t in search)  # log's count at L=6
    dense = [t for t in done if t.user_attrs.get("baseline") == "dense"]
    assert [t.user_attrs["connections"] for t in dense] == [28, 28]
    # Dedup: a repeated (pattern, seed) is not trained again and carries the original's value.
    for t in done:
        if "reused_from" in t.user_attrs:
            original = study.trials[t.user_attrs["reused_from"]]
            assert original.user_attrs["hash"] == t.user_attrs["hash"]
            assert original.value == t.value and t.user_attrs["train_seconds"] == 0.0
    hashes = [(t.user_attrs["hash"], t.user_attrs["seed"]) for t in done
              if "reused_from" not in t.user_attrs]
    assert len(hashes) == len(set(hashes))
    # Resume: the same config adds nothing; a higher count continues from the stored count.
    assert run_worker(cfg, study=create_study(cfg), progress=False).trials == 0
    more = replace(cfg, trials=9)
    assert run_worker(more, study=create_study(more), progress=False).trials == 3
    assert len(finished(study)) == 13
    status = study_status("syn", cfg.storage_url)
    assert status["counts"]["COMPLETE"] == 13 and status["best"]["accuracy"] == study.best_value


def test_study_rejects_a_changed_search_space(tmp_path):
    cfg = synthetic_config(tmp_path, trials=0)
    create_study(cfg)
    other = replace(cfg, search_space=replace(cfg.search_space, name="free"))
    with pytest.raises(UserError, match="was made with search space"):
        create_study(other)


def test_diverged_trial_is_recorded_and_study_goes_on(tmp_path):
    cfg = synthetic_config(tmp_path, trials=3)
    cfg = replace(cfg, training=replace(cfg.training, lr=1e12, momentum=0.0, schedule="cosine"))
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    failed = finished(study, TrialState.FAIL)
    assert len(failed) + len(finished(study)) == 3 and failed
    assert all("loss became" in t.user_attrs["fail_reason"] for t in failed)
    # Recorded failures count: resuming does not re-run them.
    assert run_worker(cfg, study=create_study(cfg), progress=False).trials == 0


def test_median_pruner_prunes(tmp_path):
    cfg = synthetic_config(tmp_path, trials=8, pruner={"name": "median", "warmup_epochs": 0},
                           search_space={"name": "free", "layers": [5]})
    cfg = replace(cfg, training=replace(cfg.training, epochs=2))
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    states = [t.state for t in study.trials]
    assert len(states) == 8 and TrialState.PRUNED in states


def test_nsga2_two_objectives(tmp_path):
    cfg = synthetic_config(tmp_path, trials=3, sampler={"name": "nsga2",
                                                        "second_objective": "connections"},
                           search_space={"name": "templates", "layers": [6]})
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    assert all(len(t.values) == 2 and t.values[1] == 17 for t in finished(study))
    from nas.report import figures
    assert "Pareto front" in [title for title, _ in figures(study)]


@pytest.mark.parametrize("sampler, pruner", [("cmaes", "hyperband"), ("tpe", "median")])
def test_other_samplers_and_pruners_run(tmp_path, sampler, pruner):
    cfg = synthetic_config(tmp_path, trials=4, sampler={"name": sampler},
                           pruner={"name": pruner, "warmup_epochs": 0},
                           search_space={"name": "free", "layers": [5]})
    cfg = replace(cfg, training=replace(cfg.training, epochs=2))
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(t.user_attrs["connections"] == template_pattern("log", 5).connections
               for t in study.trials)


def test_cli_study_start_and_status(tmp_path):
    config = tmp_path / "s.toml"
    config.write_text(f'''name = "cli"
trials = 2
storage = "sqlite:///{tmp_path}/cli.db"
[search_space]
layers = [4]
[data]
name = "synthetic"
train_size = 256
val_size = 128
[architecture]
growth = 4
[training]
epochs = 1
''')
    env = {**os.environ, "SKIPNAS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "nas.cli", "study", "start", str(config), "-q"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "ran 2 trials" in out.stdout and "per trial" in out.stdout
    out = subprocess.run([sys.executable, "-m", "nas.cli", "study", "status", "cli", "--storage",
                          f"sqlite:///{tmp_path}/cli.db"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "complete 2" in out.stdout
    out = subprocess.run([sys.executable, "-m", "nas.cli", "worker", str(config), "--storage",
                          "sqlite:///" + str(tmp_path / "other.db")],
                         capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "no study 'cli'" in out.stderr


def start_workers(config, count: int) -> list[subprocess.Popen]:
    """``count`` `skipnas worker` processes on one config, one CPU thread each."""
    env = {**os.environ, "SKIPNAS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-m", "nas.cli", "worker", str(config), "-q"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(count)]


def test_two_local_workers_share_a_journal_file(tmp_path):
    config = tmp_path / "j.toml"
    config.write_text(f'''name = "journal"
trials = 6
storage = "journal:///{tmp_path}/j.log"
[search_space]
name = "free"
layers = [5]
[data]
name = "synthetic"
train_size = 256
val_size = 128
[architecture]
growth = 4
[training]
epochs = 1
[sampler]
name = "random"
''')
    cfg = load_config(config)
    study = create_study(cfg)
    workers = start_workers(config, 2)
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)


POSTGRES = os.environ.get("SKIPNAS_TEST_POSTGRES")


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES, reason="scripts/test.sh starts PostgreSQL and sets "
                                         "SKIPNAS_TEST_POSTGRES")
def test_postgres_four_workers_one_killed(tmp_path):
    n = 8
    config = tmp_path / "pg.toml"
    config.write_text(f'''name = "pg-{os.getpid()}"
trials = {n}
storage = "{POSTGRES}"
heartbeat_seconds = 1
[search_space]
name = "free"
layers = [8]
[data]
name = "synthetic"
val_size = 256
[architecture]
growth = 6
bottleneck = false
[training]
epochs = 2
batch_size = 32
[sampler]
name = "random"
''')
    cfg = load_config(config)
    study = create_study(cfg)
    workers = start_workers(config, 4)
    pids = {str(w.pid): w for w in workers}
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid = t.user_attrs.get("worker", ":").split(":")[1]
            if pid in pids and t.user_attrs.get("hash"):  # its pattern is built: mid-trial
                victim = (t.number, pids[pid])
                break
        time.sleep(0.2)
    assert victim is not None, "no trial started"
    number, proc = victim
    os.kill(proc.pid, signal.SIGKILL)
    for w in workers:
        w.wait(timeout=300)
    survivors = [w for w in workers if w is not proc]
    assert all(w.returncode == 0 for w in survivors), [w.stderr.read() for w in survivors]

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == n
    assert [t.number for t in failed] == [number]
    assert len(trials) == n + 1
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    # No duplicate: every complete trial is its own slot, and trained patterns are distinct.
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    trained = [t.user_attrs["hash"] for t in complete if "reused_from" not in t.user_attrs]
    assert len(trained) == len(set(trained))
