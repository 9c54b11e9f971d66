"""Studies: config errors, end to end on SQLite, resume, dedup, baselines in every style and
budget mode, status, two journal workers. Faults (kills, pauses, signals) on every storage:
tests/test_faults.py."""
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from nas.engine.model import PatternNet
from nas.engine.spec import PatternSpec
from nas.errors import ConfigError, UserError
from nas.search.config import config_from_dict, load_config
from nas.search.execution.worker import run_worker
from nas.search.experiment.study import create_study, study_status
from nas.search.record import FIELDS, ROLE_ATTR, TrialRecord
from nas.search.slots import baseline_pattern
from nas.search.storage.backends import open_storage
from search_spaces import TEMPLATES, PatternError, template_pattern
from tests.testing import ENV, STORAGES, run_cli, tiny_config, tiny_raw, url_of, write_toml

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def synthetic_config(tmp_path, **top):
    """A tiny offsets study (L=6); a keyword replaces a top-level key or a whole section."""
    raw = tiny_raw(tmp_path, name="syn", trials=6, storage=f"sqlite:///{tmp_path}/syn.db",
                   search_space={"name": "offsets"}, data={"train_size": 512},
                   architecture={"growth": 4}, training={"epochs": 1})
    del raw["heartbeat_seconds"]
    return config_from_dict({**raw, **top}, "test.toml")


def finished(study, state=TrialState.COMPLETE):
    return [t for t in study.get_trials(deepcopy=False) if t.state == state]


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load_sample_and_build(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    space = cfg.search_space.build()
    log = template_pattern("log", space.layers)
    assert space.budget == (cfg.search_space.budget or log.connections)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    patterns = [space.suggest(study.ask()) for _ in range(3)]
    patterns += [baseline_pattern(space, t) for t in cfg.baselines.templates]
    for pattern in patterns:
        assert pattern.num_layers == space.layers
    assert all(p.connections == space.budget for p in patterns[:3])
    for p, t in zip(patterns[3:], cfg.baselines.templates):  # off budget: a K-free one's own
        assert p.connections == space.budget or (
            not TEMPLATES[t].uses_k and p == template_pattern(t, space.layers))
    # The network the study trains fits the dataset's images and classes.
    model = PatternNet(patterns[0], cfg.architecture).eval()
    with torch.no_grad():
        logits = model(torch.zeros(1, *cfg.data.info.input_shape))
    assert logits.shape == (1, cfg.data.info.num_classes)


@pytest.mark.parametrize("text, message", [
    ('name = "x"\ntrials = -1', "bad.toml: trials: must be in 0..1000000"),
    ('name = "x"\n[training]\nepoch = 2', "bad.toml: training.epoch: unknown key"),
    ('name = "x"\n[sampler]\nname = "grid"',
     "bad.toml: sampler.name: unknown sampler 'grid'; known: tpe, random, nsga2, cmaes"),
    ('name = "x"\n[pruner]\nname = "sha"', "bad.toml: pruner.name: unknown pruner 'sha'; known:"),
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


def test_a_study_larger_than_this_machine_can_analyze_is_refused(tmp_path, monkeypatch):
    """Up to a million trials, as long as analyzing them fits the starting machine's memory
    (about STUDY_BYTES_PER_TRIAL each): refused before anything is written."""
    from nas.search import config

    assert tiny_config(tmp_path, trials=config.MAX_TRIALS).trials == 1_000_000
    monkeypatch.setattr(config, "machine_memory", lambda: 2 ** 30)  # 1 GiB
    config.check_study_size(tiny_config(tmp_path, trials=100_000))
    with pytest.raises(ConfigError, match=r"trials: 200,000 trials with the baselines and noise "
                       r"repeats: analyzing them takes about 1\.9 GiB, more than this "
                       r"machine's 1 GiB"):
        create_study(tiny_config(tmp_path, trials=200_000))
    assert list(tmp_path.iterdir()) == []


def test_bad_storage_url_is_clear():
    with pytest.raises(UserError, match="bad storage URL 'mongodb://x'"):
        open_storage("mongodb://x")
    with pytest.raises(UserError, match="cannot open storage"):
        open_storage("postgresql+psycopg://nobody@127.0.0.1:1/none")


@pytest.mark.slow
def test_end_to_end_sqlite_resume_and_dedup(tmp_path):
    cfg = synthetic_config(tmp_path, baselines={"templates": ["log", "dense"], "seeds": [0, 1]})
    study = create_study(cfg)
    report = run_worker(cfg, study=study, progress=False)
    assert report.trials == 6 + 4
    done = finished(study)
    assert len(done) == 10 and not finished(study, TrialState.WAITING)
    records = {t.number: TrialRecord.from_trial(t) for t in done}
    for t in done:
        r = records[t.number]
        for key in ("spec", "hash", "connections", "mbd", "mean_distance", "params", "flops",
                    "train_seconds", "device", "worker", "seed"):
            assert getattr(r, key) is not None, key
        # Every key written is a declared record field, or the role derived from them.
        assert set(t.user_attrs) <= {*FIELDS, ROLE_ATTR}
        assert t.user_attrs[ROLE_ATTR] == r.role
    search = [r for r in records.values() if not r.is_baseline]
    assert all(r.connections == 17 for r in search)  # log's count at L=6
    dense = [r for r in records.values() if r.baseline == "dense"]
    assert [r.connections for r in dense] == [28, 28]
    # Dedup: a repeated (pattern, seed) is not trained again and carries the original's value.
    for t in done:
        r = records[t.number]
        if r.is_reused:
            original = study.trials[r.reused_from]
            assert TrialRecord.from_trial(original).hash == r.hash
            assert original.value == t.value and r.train_seconds == 0.0
    hashes = [(r.hash, r.seed) for r in records.values() if not r.is_reused]
    assert len(hashes) == len(set(hashes))
    # Resume: the same config adds nothing; a higher count continues from the stored count.
    assert run_worker(cfg, study=create_study(cfg), progress=False).trials == 0
    more = replace(cfg, trials=9)
    assert run_worker(more, study=create_study(more), progress=False).trials == 3
    assert len(finished(study)) == 13
    status = study_status("syn", cfg.storage_url)
    assert status.counts["COMPLETE"] == 13 and status.best.accuracy == study.best_value
    # Status reads every trial's kind, pattern and seed; the best trial's size whole.
    best = TrialRecord.from_trial(study.trials[status.best.number])
    assert (status.best.hash, status.best.connections, status.best.mbd) == \
        (best.hash, best.connections, best.mbd) and best.connections is not None


def test_study_rejects_a_changed_search_space(tmp_path):
    cfg = synthetic_config(tmp_path, trials=0)
    create_study(cfg)
    other = replace(cfg, search_space=replace(cfg.search_space, name="free"))
    with pytest.raises(UserError, match="was made with other settings: search_space.space is "
                                        "'offsets' in the study, 'free' here"):
        create_study(other)


def test_a_study_stored_before_a_setting_existed_resumes_at_its_old_value(tmp_path):
    """Studies made before `sampler.score`, `data.image_size` and `architecture.stem` stored
    no such keys: they resume with the values they ran (the defaults), and refuse others."""
    cfg = synthetic_config(tmp_path, trials=0)
    study = create_study(cfg)
    stored = study.user_attrs["config"]
    del stored["sampler"]["score"], stored["data"]["image_size"], stored["architecture"]["stem"]
    study.set_user_attr("config", stored)
    create_study(cfg)
    other = replace(cfg, sampler=replace(cfg.sampler, score="-mbd"))
    with pytest.raises(UserError, match="sampler.score is '-mean_distance' in the study, "
                                        "'-mbd' here"):
        create_study(other)
    other = replace(cfg, architecture=replace(cfg.architecture, stem="cifar"))
    with pytest.raises(UserError, match="architecture.stem is 'conv' in the study, 'cifar' "
                                        "here"):
        create_study(other)


def test_diverged_trial_is_recorded_and_study_goes_on(tmp_path):
    cfg = synthetic_config(tmp_path, trials=3)
    cfg = replace(cfg, training=replace(cfg.training, lr=1e12, momentum=0.0, schedule="cosine"))
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    failed = finished(study, TrialState.FAIL)
    assert len(failed) + len(finished(study)) == 3 and failed
    assert all("loss became" in TrialRecord.from_trial(t).fail_reason for t in failed)
    # Recorded failures count: resuming does not re-run them.
    assert run_worker(cfg, study=create_study(cfg), progress=False).trials == 0


@pytest.mark.slow
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
    from nas.results.report import figures
    assert "pareto-front" in [f.id for f in figures(study)]


@pytest.mark.parametrize("sampler, pruner, classes", [
    ("cmaes", "hyperband", (optuna.samplers.CmaEsSampler, optuna.pruners.HyperbandPruner)),
    ("tpe", "median", (optuna.samplers.TPESampler, optuna.pruners.MedianPruner))])
@pytest.mark.slow
def test_other_samplers_and_pruners_run(tmp_path, sampler, pruner, classes):
    cfg = synthetic_config(tmp_path, trials=4, sampler={"name": sampler},
                           pruner={"name": pruner, "warmup_epochs": 0},
                           search_space={"name": "free", "layers": [5]})
    cfg = replace(cfg, training=replace(cfg.training, epochs=2))
    study = create_study(cfg)
    assert isinstance(study.sampler, classes[0]) and isinstance(study.pruner, classes[1])
    run_worker(cfg, study=study, progress=False)
    assert len(study.trials) == 4
    if sampler == "cmaes":  # CMA-ES proposed the later trials (its generation is recorded)
        assert sum("cma:generation" in t.system_attrs for t in study.trials) >= 2
    if pruner == "hyperband":  # Hyperband judged the trials at its first rung
        assert sum("completed_rung_0" in t.system_attrs for t in study.trials) >= 2
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert all(TrialRecord.from_trial(t).connections == template_pattern("log", 5).connections
               for t in study.trials)


@pytest.mark.slow
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
    out = run_cli("study", "start", str(config), "-q")
    assert out.returncode == 0, out.stderr
    assert "ran 2 trials" in out.stdout and "per trial" in out.stdout
    out = run_cli("study", "status", "cli", "--storage", f"sqlite:///{tmp_path}/cli.db")
    assert out.returncode == 0 and "complete 2" in out.stdout
    out = run_cli("worker", str(config), "--storage", "sqlite:///" + str(tmp_path / "other.db"))
    assert out.returncode != 0 and "no study 'cli'" in out.stderr


def test_study_start_name_overrides_the_configs_name(tmp_path, monkeypatch, capsys):
    """--name: another study from the same config; a storage the config names stays, and
    without one the SQLite file follows the name (where `study status NAME` looks)."""
    from nas.cli import main

    raw = tiny_raw(tmp_path, trials=0)  # nothing to train
    config = write_toml(tmp_path / "c.toml", raw)
    assert main(["study", "start", str(config), "--name", "tiny_b", "-q"]) == 0
    assert optuna.get_all_study_names(raw["storage"]) == ["tiny_b"]
    assert "study 'tiny_b'" in capsys.readouterr().out
    assert main(["worker", str(config), "--name", "tiny_b", "-q"]) == 0
    del raw["storage"]
    write_toml(config, raw)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    assert main(["study", "start", str(config), "--name", "tiny_c", "-q"]) == 0
    assert optuna.get_all_study_names("sqlite:///studies/tiny_c.db") == ["tiny_c"]
    assert not (tmp_path / "studies" / "tiny.db").exists()
    assert main(["study", "start", str(config), "--name", "../x", "-q"]) == 2
    assert "study name '../x'" in capsys.readouterr().err


def test_the_study_bar_ends_on_the_count_the_summary_gives(capsys):
    """A trial another worker finishes after this worker's last one is in the final bar (it
    froze at 3/4 while the summary said 4 complete)."""
    from nas.search.execution.worker import _StudyBar

    study = optuna.create_study(direction="maximize")
    for value in (0.1, 0.2, 0.3):
        study.add_trial(optuna.trial.create_trial(value=value))
    running = study.ask()  # another worker's
    bar = _StudyBar(study, disable=False)
    bar.update(study.trials[2])
    assert (bar.bar.n, bar.bar.total) == (0, 1)  # the trials unfinished when it started
    study.tell(running, 0.4)
    bar.close()
    assert (bar.bar.n, bar.bar.total) == (1, 1)
    assert "1/1" in capsys.readouterr().err.split("\r")[-1]


def test_the_study_bar_counts_a_large_study_only_now_and_then():
    """Counting a study reads all of it (~0.1 s at 100,000 trials): at a trial the bar counts
    again only once BAR_SHARE of the time since its last count pays for one; a small study's
    count is due at every trial, and closing always counts."""
    from nas.search.execution import worker

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.1))
    first, second = study.ask(), study.ask()
    bar = worker._StudyBar(study, disable=False)
    assert (bar.bar.n, bar.bar.total) == (0, 2)
    bar.read_seconds = 0.0  # a count that cost nothing: due at once
    study.tell(first, 0.2)
    bar.update(study.trials[1])
    assert bar.bar.n == 1
    bar.read_seconds = 1.0  # a count that took 1 s: the next is due 1 / BAR_SHARE s later
    study.tell(second, 0.3)
    bar.update(study.trials[2])
    assert bar.bar.n == 1 and "last=COMPLETE" in str(bar.bar)
    bar.read_at -= 1.0 / worker.BAR_SHARE
    bar.update(study.trials[2])
    assert bar.bar.n == 2
    bar.close()


def test_a_confirm_runs_bar_counts_its_own_trials_with_an_eta_from_the_start(tmp_path):
    """A confirm run's bar counts the trials queued for it, not the study's earlier ones (it
    showed 13/20 [00:44<00:23] with 80 s to go), and gives an ETA before its first trial ends:
    from the earlier trials at the same fidelity, else none until its first ends; then its own."""
    from nas.search.execution import worker

    search = tiny_config(tmp_path).search_fidelity
    longer = replace(search, epochs=search.epochs * 4)
    study = optuna.create_study(direction="maximize")
    for seconds in (2.0, 4.0):  # search trials: their fidelity is the study's own
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={
            "train_seconds": seconds}))
    for fidelity in (search, search, longer):
        study.enqueue_trial({}, user_attrs={"slot": "confirm", "fidelity": fidelity.to_dict()})
    bar = worker._StudyBar(study, disable=False, search=search)
    assert (bar.bar.n, bar.bar.total) == (0, 3)
    assert bar.eta is None and "ETA=after the first trial" in str(bar.bar)  # none at `longer`
    bar.close()
    confirm = study.ask()  # a confirm trial at the search's fidelity
    confirm.set_user_attr("train_seconds", 3.0)
    study.tell(confirm, 0.6)
    bar = worker._StudyBar(study, disable=False, workers=2, search=search)
    assert (bar.bar.n, bar.bar.total) == (0, 2)
    assert bar.eta is None  # `longer` still has no earlier trial
    study.add_trial(optuna.trial.create_trial(value=0.6, user_attrs={
        "slot": "confirm", "fidelity": longer.to_dict(), "train_seconds": 10.0}))
    bar = worker._StudyBar(study, disable=False, workers=2, search=search)
    assert bar.eta == (3.0 + 10.0) / 2 and "ETA=~00:06 (earlier trials)" in str(bar.bar)
    study.tell(study.ask(), 0.7)
    bar.update(study.trials[-1])
    assert bar.bar.n == 1 and "ETA=" not in str(bar.bar) and "<?" not in str(bar.bar)
    bar.close()


def test_study_start_prints_no_empty_bar_and_an_eta_note(tmp_path):
    """A study's start shows one bar, of its trials (a stray `0trial [00:00, ?trial/s]` line
    came first), saying the ETA comes after the first trial when nothing earlier tells it."""
    config = write_toml(tmp_path / "t.toml", tiny_raw(tmp_path, trials=2))
    out = run_cli("study", "start", str(config))
    assert out.returncode == 0, out.stderr
    lines = re.split(r"[\r\n]", out.stderr)
    assert not [line for line in lines if re.search(r"\b0trial", line)], out.stderr
    assert any("0/2" in line and "ETA=after the first trial" in line for line in lines)
    assert any("2/2" in line for line in lines)


def test_an_interrupted_trial_is_queued_again_with_its_stored_keys_only(tmp_path):
    """Ctrl-C while a pattern is drawn writes none of the keys drawn so far: the slot queued
    again carries what is stored (none), not the half-drawn pattern this process holds."""
    from nas.search._optuna.api import live_trial, params_in_one_transaction, trial_id
    from nas.search._optuna.reads import claim_next
    from nas.search.execution.worker import _give_back

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/s.db"),
                                direction="maximize")
    study.enqueue_trial({}, user_attrs={"slot": "search"})
    claimed = claim_next(study)
    trial = live_trial(study, trial_id(claimed), claimed)
    with pytest.raises(KeyboardInterrupt), params_in_one_transaction(trial):
        trial.suggest_float("x", 0.0, 1.0)
        raise KeyboardInterrupt
    assert "x" in trial.params  # drawn, in this process only
    _give_back(study, trial, trial_id(claimed))
    failed, queued = study.get_trials(deepcopy=False)
    assert (failed.state, failed.params) == (TrialState.FAIL, {})
    assert (queued.state, queued.params, queued.user_attrs) == (TrialState.WAITING, {},
                                                                {"slot": "search"})


def start_workers(config, count: int) -> list[subprocess.Popen]:
    """``count`` `skipnas worker` processes on one config, one CPU thread each."""
    return [subprocess.Popen([sys.executable, "-m", "nas.cli", "worker", str(config), "-q"],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(count)]


@pytest.mark.slow
def test_two_local_workers_share_a_journal_file(tmp_path):
    config = tmp_path / "j.toml"
    config.write_text(f'''name = "journal"
trials = 8
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
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    # Both workers claimed trials (a trial claimed twice would have crashed a worker).
    claimed_by = [TrialRecord.from_trial(t).worker.split(":")[1] for t in trials]
    assert set(claimed_by) == {str(w.pid) for w in workers}


@pytest.mark.slow
def test_baselines_in_every_style_and_budget_mode(tmp_path):
    """A v1 search with baselines in all three styles, at the exact budget and the authors'
    counts: each trial records its style, each baseline has the pattern its slot asks for, a
    restart queues nothing, and analyze groups the templates by style and budget."""
    from nas.results.analysis import analyze
    from search_spaces import budgeted_pattern

    layers = [3, 3]
    cfg = synthetic_config(
        tmp_path, trials=6, search_space={"name": "free", "layers": layers, "style": "v1"},
        baselines={"templates": ["log", "nearest"], "styles": ["per_block", "v1", "v2"],
                   "budgets": ["exact", "authors"], "seeds": [0]})
    study = create_study(cfg)
    assert len(study.trials) == 6 + 2 * 3 * 2
    run_worker(cfg, study=study, progress=False)
    done = finished(study)
    assert len(done) == 18
    space = cfg.search_space.build()
    for t in done:
        r = TrialRecord.from_trial(t)
        spec = PatternSpec.from_dict(r.spec)
        assert r.style == spec.pattern.style and spec.pattern.stages == (3, 3)
        if not r.is_baseline:
            assert r.style == "v1" and r.connections == space.budget
        elif r.budget_mode == "authors":
            assert spec.pattern == template_pattern(r.baseline, layers, style=r.style)
        else:  # at log's count in its style, or its own count where it cannot meet it
            log = template_pattern("log", layers, style=r.style).connections
            try:
                expected = budgeted_pattern(r.baseline, layers, log, r.style)
            except PatternError:
                expected = template_pattern(r.baseline, layers, style=r.style)
            assert spec.pattern == expected
    assert run_worker(cfg, study=create_study(cfg), progress=False).trials == 0
    result = analyze(study, resamples=20).principle
    assert result.style == "v1" and result.trials_at_budget >= 4
    groups = {(t.template, t.style, t.budget_mode) for t in result.templates}
    assert groups == {(t, s, m) for t in ("log", "nearest") for s in ("per_block", "v1", "v2")
                      for m in ("exact", "authors")}


@pytest.mark.slow
def test_baselines_under_both_block_output_conventions(tmp_path):
    """Each template once per block output convention: "all" makes the block output read every
    node, at log's count under that convention; a restart queues nothing; analyze tells the two
    apart."""
    from nas.results.analysis import analyze, template_table

    cfg = synthetic_config(tmp_path, trials=4, search_space={"name": "free", "layers": [6]},
                           baselines={"templates": ["log", "nearest"], "seeds": [0],
                                      "block_outputs": ["template", "all"]})
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    assert len(finished(study)) == 8
    space = cfg.search_space.build()
    full = template_pattern("log", space.layers, output="all").connections
    assert full == space.budget - len(template_pattern("log", [6]).blocks[0].reads(7)) + 7
    for t in finished(study):
        r = TrialRecord.from_trial(t)
        if r.is_baseline:
            pattern = PatternSpec.from_dict(r.spec).pattern
            assert r.connections == (full if r.block_output == "all" else space.budget)
            assert (pattern.blocks[0].reads(7) == tuple(range(7))) == (r.block_output == "all")
    assert run_worker(cfg, study=create_study(cfg), progress=False).trials == 0
    result = analyze(study, resamples=20).principle
    assert {(t.template, t.block_output, t.connections) for t in result.templates} \
        == {(name, o, full if o == "all" else space.budget) for name in ("log", "nearest")
            for o in ("template", "all")}
    headers, rows = template_table(result)
    assert headers[-1] == "block output" and {r[-1] for r in rows} == {"template", "all"}


@pytest.mark.parametrize("section, message", [
    ('[search_space]\nstyle = "v3"', "search_space.style: unknown style 'v3'"),
    ('[baselines]\ntemplates = ["log"]\nstyles = ["v1", "x"]', "baselines.styles: unknown style"),
    ('[baselines]\ntemplates = ["log"]\nbudgets = ["equal"]', "baselines.budgets"),
    ('[baselines]\ntemplates = ["log"]\nblock_outputs = ["dense"]',
     "baselines.block_outputs: unknown block output 'dense'"),
])
def test_style_config_errors(tmp_path, section, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "x"\n{section}')
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def search_hashes(study):
    return [TrialRecord.from_trial(t).hash for t in finished(study)
            if TrialRecord.from_trial(t).kind == "search"]


@pytest.mark.slow
def test_a_restart_continues_the_search_and_a_fresh_one_replays(tmp_path):
    """Extending a study (`--trials 6` after 3) re-seeded the sampler with the study seed, so
    it drew the same 3 patterns again (all reused). Now the seed also counts the first trial
    a worker claims: new patterns; one worker on a fresh study still replays exactly."""
    cfg = synthetic_config(tmp_path, trials=3, search_space={"name": "free", "layers": [6]})
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    more = replace(cfg, trials=6)
    run_worker(more, study=create_study(more), progress=False)
    hashes = search_hashes(study)
    assert len(hashes) == 6 and len(set(hashes)) == 6
    assert not [t for t in finished(study) if TrialRecord.from_trial(t).is_reused]
    again = replace(cfg, storage=f"sqlite:///{tmp_path}/again.db")
    replay = create_study(again)
    run_worker(again, study=replay, progress=False)
    assert search_hashes(replay) == hashes[:3]


@pytest.mark.parametrize("kind", ["memory", *STORAGES])
def test_a_running_twin_is_waited_for_then_reused(tmp_path, kind):
    import threading
    import uuid

    from nas.search._optuna.schema import ensure_indexes
    from nas.search.execution.twins import completed_twin
    from nas.search.record import record

    cfg = synthetic_config(tmp_path)
    storage = None if kind == "memory" else open_storage(url_of(kind, tmp_path))
    if storage is not None:
        ensure_indexes(storage)
    study = optuna.create_study(direction="maximize", storage=storage,
                                study_name=f"twins-{uuid.uuid4().hex}")
    first, second = study.ask(), study.ask()
    for trial in (first, second):
        record(trial, hash="abc", seed=0)
    f = cfg.search_fidelity
    assert completed_twin(study, "abc", 0, f, f) is None  # running only: not waited for
    assert completed_twin(study, "abc", 0, f, f, before=first.number) is None  # nothing lower
    found = []
    waiter = threading.Thread(target=lambda: found.append(completed_twin(
        study, "abc", 0, f, f, before=second.number, poll_seconds=0.05)))
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # waits while the lower-numbered twin trains
    study.tell(first, 0.75)
    waiter.join(timeout=10)
    assert found[0].number == first.number and found[0].value == 0.75


@pytest.mark.parametrize("kind", ["memory", *STORAGES])
def test_the_twin_lookup_finds_what_a_scan_of_every_trial_finds(tmp_path, kind):
    """The worker's twin lookup (by hash in the database on SQLite and PostgreSQL, through its
    index of completed trials, updated as trials finish in any order, elsewhere) gives the
    same twin as scanning every completed trial: the lowest-numbered one of the pattern and
    seed at the fidelity, never a reused result nor the asking trial; and the same running
    ones."""
    import random
    import uuid

    from nas.search._optuna.schema import ensure_indexes
    from nas.search.execution.twins import TwinIndex
    from nas.search.record import record

    rng = random.Random(0)
    search = {"epochs": 2, "steps": None, "train_size": 4096, "val_size": 2000}
    other = {**search, "train_size": 16384}
    storage = None if kind == "memory" else open_storage(url_of(kind, tmp_path))
    if storage is not None:
        ensure_indexes(storage)
    study = optuna.create_study(direction="maximize", storage=storage,
                                study_name=f"twins-{uuid.uuid4().hex}")
    trials = []
    for _ in range(60):
        trial = study.ask()
        fields = {"hash": rng.choice("abc"), "seed": rng.choice([0, 1])}
        if rng.random() < 0.3:
            fields["fidelity"] = rng.choice([search, other])
        if rng.random() < 0.2:
            fields["reused_from"] = 0
        record(trial, **fields)
        trials.append(trial)

    def scan(state, h, seed, wanted, but):
        return [t.number for t in study.get_trials(deepcopy=False, states=(state,))
                if (r := TrialRecord.from_trial(t)).hash == h and r.seed == seed
                and not r.is_reused and (r.fidelity or search) == wanted and t.number != but]

    index = TwinIndex()
    rng.shuffle(trials)   # they finish in another order than they started
    for k, trial in enumerate(trials):
        study.tell(trial, rng.random())
        if k % 7 == 0 or k == len(trials) - 1:
            for h in "abcd":
                for seed in (0, 1):
                    for wanted in (search, other):
                        asking = trials[-1 - k]   # still running, or not
                        found, running = index.lookup(study, h, seed, wanted, search,
                                                      asking=asking._trial_id)
                        complete = scan(TrialState.COMPLETE, h, seed, wanted, asking.number)
                        assert (found and found.number) == min(complete, default=None)
                        assert sorted(t.number for t in running) == \
                            scan(TrialState.RUNNING, h, seed, wanted, asking.number)


def test_auto_workers_is_one_per_core_on_cpu_and_four_per_gpu_within_the_cores(monkeypatch):
    from nas.search.execution import worker
    monkeypatch.setattr(worker.os, "cpu_count", lambda: 16)
    assert worker.auto_workers("cpu") == 16
    monkeypatch.setattr(worker, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker.auto_workers("cuda") == 8
    monkeypatch.setattr(worker.os, "cpu_count", lambda: 6)
    assert worker.auto_workers("cuda") == 6


def test_with_several_workers_this_process_trains_on_its_share_of_the_cores(tmp_path,
                                                                           monkeypatch):
    """The spawned workers got cores / workers threads each, but this process trained on all
    the cores (3 threads on 2 cores): this process, too, counts the workers it started when it
    takes its share (nas.search.execution.cores), and leaves the environment as it was."""
    from nas.search.execution import worker
    seen = []

    def fake_run_worker(cfg, **kwargs):
        seen.append(kwargs.get("local_workers"))
        return worker.WorkerReport()

    monkeypatch.setattr(worker, "run_worker", fake_run_worker)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = config_from_dict(tiny_raw(tmp_path, trials=0))
    create_study(cfg)
    worker.run_workers(cfg, 2, progress=False)
    assert seen == [2]
    assert "OMP_NUM_THREADS" not in os.environ


def test_studies_name_their_objectives_for_the_dashboard(tmp_path):
    cfg = tiny_config(tmp_path, name="named")
    assert create_study(cfg).metric_names == ["val_accuracy"]
    two = tiny_config(tmp_path, name="two", sampler={"name": "nsga2",
                                                     "second_objective": "params"})
    assert create_study(two).metric_names == ["val_accuracy", "params"]
    # A study made before names were stored gets them when it is opened again.
    optuna.create_study(study_name="old", storage=tiny_config(tmp_path, name="old").storage_url,
                        direction="maximize")
    assert create_study(tiny_config(tmp_path, name="old")).metric_names == ["val_accuracy"]
