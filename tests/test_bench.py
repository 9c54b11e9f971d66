"""Tabular benchmarks: listing and sampling a space, `bench build` (real training, resumable),
the table's round trip and its refusal of damaged files, replays, and the guided samplers."""
import csv
import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from scipy import stats

import nas.results.bench_report
from nas.cli import main
from nas.errors import UserError
from nas.results.analysis import SCORE_SIGN
from nas.results.bench_report import (
    ReplaySummary,
    replay_bench,
    write_replay,
    zero_cost_ranking,
    zero_cost_table,
)
from nas.results.proxies_report import SIGN_NOTE
from nas.search.config import load_config
from nas.search.execution.worker import run_worker
from nas.search.experiment.bench import (
    CONFIG,
    PATTERNS,
    TABLE,
    Bench,
    BenchRow,
    Entry,
    build_bench,
    load_bench,
    replay,
    write_table,
)
from nas.search.experiment.study import create_study
from nas.search.record import TrialRow
from nas.search.slots import bench_slots
from nas.search.strategy.guided import gp_posterior
from search_spaces import (
    Pattern,
    distance_stats,
    make_space,
    offsets_in_words,
    pattern_features,
    reads_of_input,
    template_pattern,
)
from search_spaces.spaces import (
    MAX_LISTED,
    FixedParams,
    RandomKeys,
    count_subsets,
    sample_patterns,
)
from tests.testing import tiny_raw, write_toml


def write_bench_config(path, name="tiny", layers=7, sampler="random"):
    """A benchmark config at ``path``: every offsets pattern of one block, seeds 0 and 1."""
    raw = tiny_raw(path.parent, name=name, trials=0, storage=f"sqlite:///{path.parent}/{name}.db",
                   bench={"seeds": [0, 1]}, search_space={"name": "offsets", "layers": [layers]},
                   data={"train_size": 256, "val_size": 128}, architecture={"growth": 4},
                   training={"epochs": 1}, sampler={"name": sampler})
    del raw["heartbeat_seconds"]
    return write_toml(path, raw)


def bench_config(tmp_path, name="tiny", layers=7, sampler="random"):
    return write_bench_config(tmp_path / f"{name}.toml", name, layers, sampler)


@pytest.mark.parametrize("L", [6, 9, 12, 15])
def test_every_offset_set_at_the_budget_is_listed_once_and_reachable(L):
    space = make_space("offsets", [L])
    patterns = space.all_patterns()
    # The listing (a search) agrees with the count (a DP over the offsets' L + 2 - o edges).
    assert len(patterns) == count_subsets([L + 2 - o for o in range(2, L + 1)],
                                          space.budget - (L + 1))
    assert len({p.hash for p in patterns}) == len(patterns)
    assert all(p.connections == space.budget for p in patterns)
    for p in patterns[:20]:  # keys 1 for the set's offsets, 0 for the others give it back
        offsets = {i - j for i, j in [(L + 1, j) for j in p.blocks[0].reads(L + 1)]}
        keys = {f"offset_{o}": float(o in offsets) for o in range(2, L + 1)}
        assert space.suggest(FixedParams(keys)).hash == p.hash


def test_spaces_too_large_to_list_say_so_instead_of_listing():
    # L=32 has 205,163 offset sets at log's budget (counted by listing them once); L=64 has
    # astronomically many and listing them ran out of memory before the cap existed.
    assert count_subsets(range(2, 33), 141 - 33) == 205_163 > MAX_LISTED
    assert make_space("offsets", [32]).all_patterns() is None
    assert make_space("offsets", [64]).all_patterns() is None
    assert count_subsets([2, 3, 5], 5) == 2 and count_subsets([2, 3], 4) == 0


def test_sampled_patterns_are_distinct_seeded_and_refuse_too_many():
    space = make_space("free", [6])
    a, b = sample_patterns(space, 30, seed=3), sample_patterns(space, 30, seed=3)
    assert [p.hash for p in a] == [p.hash for p in b] and len({p.hash for p in a}) == 30
    assert all(p.connections == space.budget for p in a)
    with pytest.raises(ValueError, match="only 2 distinct patterns"):
        sample_patterns(make_space("offsets", [6]), 5)


@pytest.mark.slow
def test_bench_build_trains_every_pattern_per_seed_resumes_and_round_trips(tmp_path):
    config = bench_config(tmp_path)
    out, report = build_bench(config, tmp_path / "out", progress=False)
    assert report.trials == 4 * 2
    bench = load_bench(out)
    space = load_config(config).search_space.build()
    assert set(bench.entries) == {p.hash for p in space.all_patterns()}
    study = create_study(load_config(config))
    stored = {(t.user_attrs["hash"], t.user_attrs["seed"]): t.values[0] for t in study.trials}
    for h, entry in bench.entries.items():
        assert entry.accuracies == (stored[h, 0], stored[h, 1])
        assert entry.accuracy == pytest.approx(sum(entry.accuracies) / 2)
        assert entry.pattern.hash == h
    # The per-pattern summary: every pattern once, best mean first, with its two seeds.
    with (out / PATTERNS).open() as f:
        summary = list(csv.DictReader(f))
    assert [r["hash"] for r in summary] == [e.pattern.hash for e in bench.ranked()]
    assert {r["seeds"] for r in summary} == {"2"}
    assert [float(r["std"]) for r in summary] == pytest.approx([e.std for e in bench.ranked()],
                                                               abs=1e-6)
    # Resumed: nothing left to train, the same table.
    table = (out / TABLE).read_text()
    _, again = build_bench(config, tmp_path / "out", progress=False)
    assert again.trials == 0 and (out / TABLE).read_text() == table


def test_bench_slots_are_seed_major_so_a_cut_build_has_whole_seeds(tmp_path):
    cfg = load_config(bench_config(tmp_path))
    cfg = replace(cfg, bench=replace(cfg.bench, seeds=(0, 1, 2)))
    slots = bench_slots(cfg)
    patterns = len(cfg.search_space.build().all_patterns())
    assert [s.seed for s in slots] == [0] * patterns + [1] * patterns + [2] * patterns
    assert len({(s.hash, s.seed) for s in slots}) == 3 * patterns


def test_reliability_is_the_corrected_split_half_spearman_of_the_means(tmp_path):
    cfg = load_config(bench_config(tmp_path))
    cfg = replace(cfg, bench=replace(cfg.bench, seeds=(0, 1, 2, 3)))
    patterns = make_space("offsets", [9]).all_patterns()[:4]
    # Means over seeds 0 and 2 rank the patterns 1 2 3 4, over seeds 1 and 3: 1 2 4 3.
    seeds = [(0.70, 0.70, 0.70, 0.70), (0.71, 0.70, 0.71, 0.72), (0.72, 0.74, 0.72, 0.72),
             (0.73, 0.72, 0.73, 0.72)]
    bench = Bench(cfg, {p.hash: Entry(p, acc) for p, acc in zip(patterns, seeds)})
    r = bench.reliability()
    assert r.seeds == 4
    assert r.split_half == pytest.approx(1 - 6 * 2 / (4 * 15))             # 0.8
    assert r.reliability == pytest.approx(2 * 0.8 / 1.8)                    # Spearman-Brown
    assert r.ceiling == pytest.approx((2 * 0.8 / 1.8) ** 0.5)
    assert Entry(patterns[0], (0.1, 0.3)).std == pytest.approx(0.02 ** 0.5)
    assert np.isnan(Entry(patterns[0], (0.1,)).std)
    one = Bench(replace(cfg, bench=replace(cfg.bench, seeds=(0,))),
                {p.hash: Entry(p, (0.7,)) for p in patterns})
    with pytest.raises(UserError, match="reliability needs two"):
        one.reliability()


def test_bench_summary_prints_the_old_tables_reliability(tmp_path, capsys):
    fake_bench(tmp_path, L=8, noise=0.01)
    main(["bench", "summary", str(tmp_path)])
    out = capsys.readouterr().out
    bench = load_bench(tmp_path)
    assert f"reliability of the means over 2 seeds: {bench.reliability().reliability:.3f}" in out
    assert len((tmp_path / PATTERNS).read_text().splitlines()) == 1 + len(bench.entries)


def test_bench_build_refuses_a_config_that_is_not_a_benchmark(tmp_path):
    config = bench_config(tmp_path)
    config.write_text(config.read_text().replace("seeds = [0, 1]\n", ""))
    with pytest.raises(UserError, match="not a benchmark config"):
        build_bench(config, tmp_path / "out", progress=False)
    config.write_text(config.read_text().replace("trials = 0", "trials = 3")
                      .replace("[bench]", "[bench]\nseeds = [0]"))
    with pytest.raises(UserError, match="set trials = 0"):
        build_bench(config, tmp_path / "out", progress=False)
    big = bench_config(tmp_path, "big", layers=30)
    big.write_text(big.read_text().replace('name = "offsets"', 'name = "free"'))
    with pytest.raises(UserError, match="too large to list; set bench.patterns"):
        build_bench(big, tmp_path / "out", progress=False)


def fake_bench(tmp_path, L=12, noise=0.0):
    """A benchmark directory whose accuracy is a known function of the mean distance."""
    write_bench_config(tmp_path / CONFIG, "fake", L)
    rng = np.random.default_rng(0)
    rows = []
    for p in make_space("offsets", [L]).all_patterns():
        stats = distance_stats(p)
        for seed in (0, 1):
            rows.append(BenchRow(TrialRow(
                trial=len(rows), accuracy=0.9 - 0.1 * stats.mean + noise * rng.normal(),
                template="", style="per_block", budget_mode="", block_output="", hash=p.hash,
                seed=seed, connections=p.connections, mbd=stats.mbd, mean_distance=stats.mean,
                reads_of_input=reads_of_input(p), params=0, flops=0, train_seconds=0.0),
                p.to_dict()))
    write_table(rows, tmp_path / TABLE)
    return load_bench(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace(",0,", ",7,", 1), r"lack seeds of \[0, 1\]"),
    (lambda t: t.replace("\n", "\nffffffffffffffff,0,0.5,1,1,1,1,1,1,{}\n", 1), "not a benchmark"),
    (lambda t: "a,b\n1,2\n", "columns must include"),
    (lambda t: t.split("\n")[0] + "\n", "no rows"),
])
def test_a_damaged_table_is_refused_with_its_path(tmp_path, edit, message):
    fake_bench(tmp_path, L=8)
    path = tmp_path / TABLE
    path.write_text(edit(path.read_text()))
    with pytest.raises(UserError, match=message) as e:
        load_bench(tmp_path)
    assert str(path) in str(e.value)


def test_a_table_with_a_foreign_pattern_hash_is_refused(tmp_path):
    fake_bench(tmp_path, L=8)
    path = tmp_path / TABLE
    lines = path.read_text().split("\n")
    other = lines[1].split(",")[0]
    lines[3] = other + lines[3][len(other):]  # row 3 now claims row 1's hash
    path.write_text("\n".join(lines))
    with pytest.raises(UserError, match="does not have hash"):
        load_bench(tmp_path)


def test_replays_measure_what_they_claim(tmp_path):
    bench = fake_bench(tmp_path)
    ranked = bench.ranked()
    top5, top1 = bench.top(0.05), bench.top(0.01)
    assert len(top5) == -(-len(ranked) * 5 // 100) and len(top1) >= 1
    for name in ("random", "tpe"):
        runs = [replay(bench, name, trials=20, repeat=r) for r in range(3)]
        assert replay(bench, name, 20, 0) == runs[0]  # seeded by the repeat
        for run in runs:
            assert len(run.curve) == 20 and list(run.curve) == sorted(run.curve)
            assert 1 <= run.distinct <= 20
            assert run.curve[-1] <= ranked[0].accuracy
            threshold = min(bench.entries[h].accuracy for h in top5)
            first = next((k + 1 for k, v in enumerate(run.curve) if v >= threshold), None)
            assert run.top5 == first
    # Accuracy falls with mean distance exactly here, so the distance screen's first pick is
    # the best pattern.
    screened = replay(bench, "screen", trials=5, repeat=0)
    assert screened.top1 == 1 and screened.curve[0] == ranked[0].accuracy


def test_a_replay_tells_one_seeds_value_and_its_columns_agree(tmp_path, monkeypatch):
    """A trial is told one seed's accuracy of its pattern (never the mean, the same one again
    for a repeat); the top 1% comes no earlier than the top 5% and where the curve reaches the
    best mean; the regret's interval holds its mean."""
    bench = fake_bench(tmp_path, noise=0.01)
    seeds = {a for e in bench.entries.values() for a in e.accuracies}
    means = {e.accuracy for e in bench.entries.values()}
    told: list[float] = []
    real_tell = optuna.Study.tell

    def tell(study, trial, value, *args, **kwargs):
        told.append(value)
        return real_tell(study, trial, value, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "tell", tell)
    best = bench.ranked()[0].accuracy
    for repeat in range(4):
        told.clear()
        run = replay(bench, "tpe", trials=30, repeat=repeat)
        assert set(told) <= seeds and not set(told) & means
        assert len(set(told)) == run.distinct
        if run.top1 is not None:
            assert run.top5 is not None and run.top5 <= run.top1
            assert run.curve[run.top1 - 1] == best and run.top1 == 1 + run.curve.index(best)
        else:
            assert best not in run.curve
    result = replay_bench(bench, ("random", "tpe"), repeats=3, trials=10, progress=False,
                          resamples=20)
    for s in result.strategies:
        assert len(s.top1_trials) == 3
        for low, mean, high in zip(s.regret_low, s.regret_mean, s.regret_high):
            assert low <= mean <= high


def test_replay_and_proxies_write_beside_never_into_the_benchmark(tmp_path, monkeypatch):
    folder = tmp_path / "bench"
    folder.mkdir()
    fake_bench(folder, L=8)
    monkeypatch.chdir(tmp_path)
    for kind in ("replay", "proxies"):
        assert main(["bench", kind, str(folder), "--out", str(folder), "-q"]) == 2
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG, TABLE]
    assert main(["bench", "replay", "bench", "--sampler", "random", "--repeats", "1",
                 "--trials", "3", "--resamples", "10", "-q"]) == 0
    assert (tmp_path / "replay_fake" / "replay.json").exists()


def test_every_strategy_replays_and_the_report_is_written(tmp_path):
    bench = fake_bench(tmp_path, noise=0.002)
    strategies = ("random", "cmaes", "prior", "tpe_features", "cmaes_features")
    result = replay_bench(bench, strategies, repeats=2, trials=12, progress=False,
                          resamples=50)
    assert [s.strategy for s in result.strategies] == list(strategies)
    for s in result.strategies:
        assert len(s.regret_mean) == 12 and min(s.regret_mean) >= 0
        assert all(a >= b - 1e-12 for a, b in zip(s.regret_mean, s.regret_mean[1:]))
    spearman = {z.score: z.rank.r.value for z in result.zero_cost if z.method == "spearman"}
    assert spearman["-mean_distance"] > 0.95  # accuracy is a falling function of the distance
    paths = write_replay(result, tmp_path / "out")
    written = json.loads(paths[0].read_text())
    assert written["trials"] == 12 and ReplaySummary.from_json(written) == result
    assert "screen" not in paths[1].read_text() and "prior" in paths[2].read_text()


def test_each_zero_cost_row_correlates_accuracy_with_the_quantity_it_names(tmp_path):
    """One sign convention: r is the rank correlation of accuracy with the row's quantity as
    named ("-X": X negated), and the header says which sign is better."""
    bench = fake_bench(tmp_path, noise=0.002)
    entries = list(bench.entries.values())
    accuracy = np.array([e.accuracy for e in entries])
    rows = zero_cost_ranking(bench, resamples=20)
    r = {z.score: z.rank.r.value for z in rows if z.method == "spearman"}
    for name, of in (("mean_distance", lambda d: d.mean), ("mbd", lambda d: d.mbd)):
        distance = np.array([of(distance_stats(e.pattern)) for e in entries], dtype=float)
        assert name not in r
        assert r[f"-{name}"] == pytest.approx(stats.spearmanr(-distance, accuracy)[0])
    headers, _ = zero_cost_table(rows)
    assert headers[0] == f"score ({SCORE_SIGN})" and "r > 0" in headers[0]
    assert SIGN_NOTE == SCORE_SIGN  # bench proxies states the same convention


def test_replay_shows_one_bar_over_repeats_and_strategies(tmp_path, monkeypatch, capsys):
    """The bar's ETA holds: each stretch of it runs every strategy once (repeat-major), and it
    stays up while the zero-cost scores are ranked; the order changes no replay."""
    bench = fake_bench(tmp_path, noise=0.002)
    real, calls = nas.results.bench_report.replay, []

    def recorded(bench, name, trials, repeat):
        calls.append((name, repeat))
        return real(bench, name, trials, repeat)

    monkeypatch.setattr(nas.results.bench_report, "replay", recorded)
    strategies = ("random", "tpe", "screen")
    result = replay_bench(bench, strategies, repeats=2, trials=6, resamples=10)
    assert calls == [(name, r) for r in range(2) for name in strategies]
    err = capsys.readouterr().err
    assert "6/6" in err and "zero-cost score rankings" in err
    for name, s in zip(strategies, result.strategies):
        again = [real(bench, name, 6, r) for r in range(2)]
        assert s.strategy == name and s.top5_trials == tuple(a.top5 for a in again)
        assert s.regret_mean == pytest.approx(
            (result.best_accuracy - np.array([a.curve for a in again])).mean(axis=0))
    replay_bench(bench, strategies[:1], repeats=1, trials=3, progress=False, resamples=10)
    assert capsys.readouterr().err == ""


def test_a_guided_sampler_runs_a_real_study_and_screens_by_distance(tmp_path):
    from nas.search.config import config_from_dict

    cfg = config_from_dict({
        "name": "guided", "trials": 3, "storage": f"sqlite:///{tmp_path}/g.db",
        "search_space": {"name": "offsets", "layers": [10]},
        "data": {"name": "synthetic", "train_size": 128, "val_size": 64},
        "architecture": {"growth": 4, "bottleneck": False},
        "training": {"steps": 2, "batch_size": 32}, "sampler": {"name": "screen"}})
    study = create_study(cfg)
    run_worker(cfg, study=study, progress=False)
    hashes = [t.user_attrs["hash"] for t in study.trials]
    assert len(set(hashes)) == 3
    means = sorted(distance_stats(p).mean for p in cfg.search_space.build().all_patterns())
    assert [t.user_attrs["mean_distance"] for t in study.trials] == pytest.approx(means[:3])


def test_the_screen_maximises_the_score_it_is_given(tmp_path):
    """screen:-reads_of_node0 proposes the patterns whose layers read the block input least
    first, the shorter mean distance first among them; a bad score or strategy is one clear
    error before anything runs."""
    from nas.search.config import config_from_dict
    from nas.search.experiment.bench import strategy_config
    from nas.search.strategy.samplers import make_sampler
    from search_spaces.features import SCORES

    base = {"name": "s", "search_space": {"name": "offsets", "layers": [10]},
            "data": {"name": "synthetic"}}
    cfg = strategy_config(config_from_dict(base), "screen:-reads_of_node0")
    assert (cfg.sampler.name, cfg.sampler.score) == ("screen", "-reads_of_node0")
    space = cfg.search_space.build()
    study = optuna.create_study(direction="maximize", sampler=make_sampler(space, cfg.sampler, 0))
    proposed = []
    for _ in range(6):
        trial = study.ask()
        proposed.append(space.suggest(trial))
        study.tell(trial, 0.5)
    key = sorted((SCORES["reads_of_node0"](p), distance_stats(p).mean)
                 for p in space.all_patterns())
    assert [(SCORES["reads_of_node0"](p), distance_stats(p).mean)
            for p in proposed] == pytest.approx(key[:6])
    with pytest.raises(UserError, match="score: unknown screen score 'snip'"):
        config_from_dict({**base, "sampler": {"name": "screen", "score": "snip"}})
    with pytest.raises(UserError, match="only screen takes a score"):
        strategy_config(cfg, "tpe:-mbd")
    with pytest.raises(UserError, match="unknown screen score"):
        strategy_config(cfg, "screen:nothing")


def test_gp_posterior_is_surest_where_it_has_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4))
    y = 0.5 - 0.1 * x[:, 0] + 0.01 * rng.normal(size=12)
    far = x[:2] + 10.0
    mu, sigma = gp_posterior(x, y, np.vstack([x, far]))
    assert np.all(sigma[:12] < sigma[12:].min())
    assert np.corrcoef(mu[:12], y)[0, 1] > 0.9


def test_a_guided_samplers_history_read_incrementally_is_the_studys(storage_url):
    """Tried patterns and completed results, read a few new trials at a time (on a database
    without the WAITING trials), equal a full read of the study after every step, with trials
    finishing out of order, failing, waiting (then taken) and running."""
    import uuid

    from nas.search.config import config_from_dict
    from nas.search.storage.backends import open_storage
    from nas.search.strategy.guided import PriorSampler

    cfg = config_from_dict({"name": "h", "search_space": {"name": "offsets", "layers": [10]}})
    space = cfg.search_space.build()
    sampler = PriorSampler(space, seed=0, candidates=8)
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                study_name=f"h-{uuid.uuid4().hex[:8]}",
                                storage=open_storage(storage_url))
    rng = np.random.default_rng(0)
    running: list[optuna.Trial] = []
    for step in range(40):
        if step % 7 == 3:
            study.enqueue_trial({}, skip_if_exists=False)   # waits, no params yet
        if running and rng.random() < 0.6:                  # a random one finishes
            trial = running.pop(int(rng.integers(len(running))))
            if rng.random() < 0.2:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, float(rng.random()))
        else:
            trial = study.ask()
            if trial.number % 5 != 4:  # some asked trials never get params
                space.suggest(trial)
            running.append(trial)
        trials = study.get_trials(deepcopy=False)
        tried = {space.suggest(FixedParams(t.params)).hash for t in trials if t.params}
        done = [(space.suggest(FixedParams(t.params)).hash, t.values[0]) for t in trials
                if t.state == optuna.trial.TrialState.COMPLETE and t.params]
        got_tried, got_done = sampler.history(study)
        assert got_tried == tried and sorted((p.hash, a) for p, a in got_done) == sorted(done)


def test_a_trial_queued_before_finished_ones_enters_the_history_when_it_finishes(storage_url):
    """On a database the history is read without the WAITING trials: one numbered before
    trials that finished must still hold back the part of the study never read again."""
    import uuid

    from optuna.distributions import FloatDistribution

    from nas.search.storage.backends import open_storage
    from nas.search.strategy.guided import PriorSampler
    from search_spaces.spaces import RandomKeys

    space = make_space("offsets", [10])
    sampler = PriorSampler(space, seed=0, candidates=8)
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                study_name=f"q-{uuid.uuid4().hex[:8]}",
                                storage=open_storage(storage_url))
    study.enqueue_trial({}, skip_if_exists=False)            # number 0, waits
    rng = np.random.default_rng(0)
    for value in (0.1, 0.2, 0.3):                             # numbers 1-3, finished
        keys = RandomKeys(rng)
        space.suggest(keys)
        study.add_trial(optuna.trial.create_trial(
            params=keys.params, value=value,
            distributions={k: FloatDistribution(0.0, 1.0) for k in keys.params}))
    assert len(sampler.history(study)[1]) == 3
    queued = study.ask()                                      # takes number 0 now
    assert queued.number == 0
    pattern = space.suggest(queued)
    study.tell(queued, 0.9)
    tried, done = sampler.history(study)
    assert pattern.hash in tried and (pattern.hash, 0.9) in {(p.hash, a) for p, a in done}


def test_prior_fits_each_pattern_once_and_at_most_gp_points_of_them(monkeypatch):
    import nas.search.strategy.guided as guided

    cfg_space = make_space("offsets", [12])
    patterns = cfg_space.all_patterns()[:30]
    sampler = guided.PriorSampler(cfg_space, seed=0)
    done = [(p, 0.5 + 0.01 * k) for k, p in enumerate(patterns)] + [(patterns[0], 0.7)]
    kept, y, runs = sampler.gp_points(done)
    assert [p.hash for p in kept] == [p.hash for p in patterns]
    assert y[0] == pytest.approx(0.6) and runs[0] == 2 and set(runs[1:]) == {1.0}
    monkeypatch.setattr(guided, "GP_POINTS", 10)
    kept, y, runs = sampler.gp_points(done)
    best = sorted(range(30), key=lambda k: -(0.6 if k == 0 else 0.5 + 0.01 * k))[:5]
    assert len(kept) == 10 and {patterns[k].hash for k in best} <= {p.hash for p in kept}
    # One run each: the noise is the single-run noise of before.
    x = np.random.default_rng(0).normal(size=(6, 3))
    mu, sigma = gp_posterior(x, x[:, 0], x[:2] + 1)
    assert np.allclose(gp_posterior(x, x[:, 0], x[:2] + 1, np.ones(6)), (mu, sigma))


def test_tpe_features_keeps_its_inner_study_bounded(monkeypatch):
    import nas.search.strategy.guided as guided

    monkeypatch.setattr(guided, "INNER_TRIALS", 12)
    space = make_space("offsets", [12])
    sampler = guided.EmbeddedSampler(space, seed=0, candidates=16, inner="tpe")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    first: dict[str, float] = {}   # each pattern's first result: what the inner TPE is told
    for k in range(30):
        trial = study.ask()
        pattern = space.suggest(trial)
        study.tell(trial, 0.5 + 0.001 * k * (-1) ** k)
        assert len(sampler.inner.get_trials(deepcopy=False)) <= 12 + 2
        if k < 29:   # the last result is told on the next ask
            first.setdefault(pattern.hash, study.trials[-1].value)
    complete = (optuna.trial.TrialState.COMPLETE,)
    told = [t.values[0] for t in sampler.inner.get_trials(states=complete)]
    assert max(told) == max(first.values())   # the best point survives every rebuild


def test_random_keys_remember_their_answers():
    keys = RandomKeys(np.random.default_rng(0))
    space = make_space("offsets", [9])
    pattern = space.suggest(keys)
    assert space.suggest(FixedParams(keys.params)).hash == pattern.hash
    assert Pattern.from_dict(pattern.to_dict()).hash == pattern.hash


def test_every_listed_offsets_pattern_encodes_to_params_that_decode_to_it():
    for layers in ([8], [15]):
        space = make_space("offsets", layers)
        for p in space.all_patterns():
            assert space.suggest(FixedParams(space.params_of(p))) == p
    assert make_space("offsets", [6, 6]).params_of(template_pattern("log", [6, 6])) is None


def _first_proposals(sampler: str, space_layers: list[int], repeats: int) -> Counter:
    from nas.search.config import config_from_dict
    from nas.search.strategy.samplers import make_sampler

    cfg = config_from_dict(tiny_raw(Path("/nonexistent"), search_space={
        "name": "offsets", "layers": space_layers}, sampler={"name": sampler}))
    space = cfg.search_space.build()
    first = Counter()
    for seed in range(repeats):
        study = optuna.create_study(sampler=make_sampler(cfg.search_space.build(), cfg.sampler,
                                                         seed))
        first[space.suggest(study.ask()).hash] += 1
    return first


def test_uniform_draws_every_pattern_with_equal_chance():
    space = make_space("offsets", [8])
    first = _first_proposals("uniform", [8], 40 * len(space.all_patterns()))
    assert set(first) == {p.hash for p in space.all_patterns()}
    assert stats.chisquare([first[p.hash] for p in space.all_patterns()]).pvalue > 1e-3


def test_uniform_covers_the_space_without_repeats_then_draws_at_random():
    from nas.search.strategy.guided import UniformSampler

    space = make_space("offsets", [8])
    n = len(space.all_patterns())
    study = optuna.create_study(sampler=UniformSampler(space, seed=1))
    seen = []
    for _ in range(n + 2):
        trial = study.ask()
        seen.append(space.suggest(trial).hash)
        study.tell(trial, 0.5)
    assert len(set(seen[:n])) == n  # every pattern once
    assert set(seen[n:]) <= set(seen[:n])


def test_uniform_refuses_a_space_it_cannot_list_before_anything_runs(tmp_path):
    from nas.errors import ConfigError
    from nas.search.strategy.samplers import make_sampler
    from tests.testing import tiny_config

    cfg = tiny_config(tmp_path, search_space={"name": "offsets", "layers": [6, 6]},
                      sampler={"name": "uniform"})
    with pytest.raises(ConfigError, match="sampler 'uniform' needs a space whose patterns"):
        make_sampler(cfg.search_space.build(), cfg.sampler, 0)


def test_pattern_features_and_offsets_in_words_on_log():
    log = template_pattern("log", [12])
    f = pattern_features(log)
    stats = distance_stats(log)
    assert (f.mean_distance, f.mbd) == (stats.mean, stats.mbd)
    assert f.reads_of_node0 == 4  # nodes 1, 2, 4 and 8 read node 0 (offsets 1, 2, 4, 8)
    shares = [f.at_distance_1, f.at_distance_2, f.at_distance_3, f.at_distance_4_plus]
    assert sum(shares) == pytest.approx(1) and f.at_distance_4_plus == 0  # log's MBD is 3
    assert f.at_distance_1 == pytest.approx(log.connections / stats.pairs)  # an edge: 1 hop
    # Offset o spans the 14 - o connections into nodes o..13.
    assert offsets_in_words(log) == "reads 1 back x13, 2 back x12, 4 back x10, 8 back x6"


def test_an_undefined_reliability_has_no_ceiling():
    from nas.search.experiment.bench import Reliability

    assert np.isnan(Reliability(2, math.nan, math.nan).ceiling)
    assert Reliability(2, -0.2, -0.5).ceiling == 0.0
    assert Reliability(2, 0.8, 0.64).ceiling == pytest.approx(0.8)
