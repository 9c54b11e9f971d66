"""The transfer study (issue 37): does the search's ranking hold for the scaled network
trained fully? Its statistics, and the published README recomputed from its runs."""
import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from nas.results.transfer import bootstrap_spearman, permutation_p, summarise
from nas.search.experiment.transfer import TransferConfig

ROOT = Path(__file__).resolve().parents[1]


def test_the_permutation_p_is_exact():
    x = np.arange(5.0)
    assert permutation_p(x, x * 2) == pytest.approx(1 / 120)
    assert permutation_p(x, -x) == 1.0
    # rho = 0.9 (one swap at the top): orderings at least as concordant: itself and identity
    assert permutation_p(x, np.array([0, 1, 2, 4, 3.0])) == pytest.approx(
        sum(stats.spearmanr(x, p).statistic >= 0.9 - 1e-12
            for p in itertools.permutations(x)) / 120)


def test_the_bootstrap_is_seeded_and_collapses_without_seed_noise():
    rng = np.random.default_rng(0)
    small, full = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    assert bootstrap_spearman(small, full, 200, seed=1) == bootstrap_spearman(small, full, 200,
                                                                              seed=1)
    low, high = bootstrap_spearman(small, full, 200)
    assert -1 <= low <= high <= 1
    flat_small = np.repeat(np.arange(5.0)[:, None], 4, axis=1)
    flat_full = np.repeat(np.array([0, 2, 1, 3, 4.0])[:, None], 3, axis=1)
    assert bootstrap_spearman(flat_small, flat_full, 50) == pytest.approx((0.9, 0.9))


def fake_study(tmp_path, table, seeds=(100, 101, 102)):
    """A transfer config whose runs hold ``table`` (name -> test accuracy per seed)."""
    cfg = TransferConfig("unused.toml", tmp_path, 2, seeds,
                         tuple((name, i) for i, name in enumerate(table)), {})
    log = []
    for name, accs in table.items():
        for seed, acc in zip(seeds, accs):
            folder = cfg.run_dir(name, seed)
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps({
                "name": name, "seed": seed, "pattern": f"h-{name}", "test_accuracy": acc,
                "epochs": 3, "train_seconds": 600.0, "wall_seconds": 630.0, "params": 1000}))
            log.append(f"2026-12-07 04:0{len(log) % 10}:00 done {name} seed {seed}")
    (tmp_path / "run.log").write_text("\n".join(["2026-12-07 04:00:00 start log seed 100",
                                                 *log]) + "\n")
    return cfg


def test_the_summary_is_paired_by_seed_pooled_and_holm_adjusted(tmp_path):
    table = {"log": [0.90, 0.91, 0.905], "nearest": [0.91, 0.915, 0.912],
             "trial 13": [0.912, 0.92, 0.913], "trial 39": [0.905, 0.91, 0.904]}
    cfg = fake_study(tmp_path, table)
    confirmed = {n: (f"h-{n}", 0.75 + i / 100, (0.84 + i / 100, 0.85 + i / 100))
                 for i, n in enumerate(table)}
    s = summarise(cfg, confirmed, "trial 13")
    full = np.array(list(table.values()))
    # each pattern's mean and its t-interval
    for row, accs in zip(s.rows, full):
        low, high = stats.t.interval(0.95, 2, accs.mean(), stats.sem(accs))
        assert row.full.mean.value == pytest.approx(accs.mean())
        assert (row.full.mean.low, row.full.mean.high) == pytest.approx((low, high))
    by = {c.other: c for c in s.comparisons}
    assert set(by) == {"log", "nearest"}
    for other in ("log", "nearest"):
        d = full[2] - full[list(table).index(other)]
        paired = stats.ttest_rel(full[2], full[list(table).index(other)])
        assert by[other].paired.diff.value == pytest.approx(d.mean())
        assert (by[other].paired.diff.low, by[other].paired.diff.high) == pytest.approx(
            tuple(paired.confidence_interval()))
    # two-way ANOVA residual: patterns x seeds without interaction, (4 - 1) x (3 - 1) df
    assert s.design.df == 6
    resid = full - full.mean(1, keepdims=True) - full.mean(0, keepdims=True) + full.mean()
    assert s.design.residual_std == pytest.approx(math.sqrt((resid ** 2).sum() / 6))
    # Holm by hand: the smaller p at 1 - 0.05 / 2; the other at 0.95 when that step rejected
    first, second = sorted(by.values(), key=lambda c: c.pooled.diff.value ** 2 /
                           c.pooled.se ** 2, reverse=True)
    p_first = 2 * stats.t.sf(abs(first.pooled.diff.value) / first.pooled.se, 6)
    levels = (0.975, 0.95 if p_first <= 0.025 else 0.975)
    for c, level in zip((first, second), levels):
        half = stats.t.ppf(1 - (1 - level) / 2, 6) * c.pooled.se
        assert (c.holm.low, c.holm.high) == pytest.approx(
            (c.pooled.diff.value - half, c.pooled.diff.value + half))
    assert s.spearman.value == pytest.approx(stats.spearmanr(
        [c[2][0] for c in confirmed.values()], full.mean(1)).statistic)
    assert s.seconds_per_epoch == 200.0 and s.run_hours == pytest.approx(12 * 630 / 3600)


def test_a_pattern_missing_a_seed_is_left_out_never_a_seed(tmp_path):
    table = {"log": [0.90, 0.91, 0.905], "nearest": [0.91, 0.915, 0.912],
             "trial 13": [0.912, 0.92, 0.913]}
    cfg = fake_study(tmp_path, table)
    (cfg.run_dir("nearest", 101) / "result.json").unlink()
    confirmed = {n: (f"h-{n}", 0.75, (0.84, 0.85)) for n in table}
    s = summarise(cfg, confirmed, "trial 13")
    assert [r.name for r in s.rows] == ["log", "trial 13"]
    assert all(r.full.n == 3 for r in s.rows) and [c.other for c in s.comparisons] == ["log"]


PUBLISHED = ROOT / "studies" / "transfer" / "fashion_mnist.toml"


@pytest.fixture(scope="module")
def published():
    cwd = os.getcwd()
    os.chdir(ROOT)  # the config's paths are the repository's
    try:
        from nas.results.transfer import source_numbers
        cfg = TransferConfig.load(PUBLISHED)
        confirmed, winner = source_numbers(cfg)
        summary = summarise(cfg, confirmed, winner)
    finally:
        os.chdir(cwd)
    return cfg, summary, (ROOT / cfg.out / "README.md").read_text(encoding="utf-8")


def test_the_published_runs_are_scaled_unseen_seeds_scored_on_the_test_split(published):
    from nas.engine.spec import PatternSpec
    from nas.search.config import load_config
    from nas.search.storage.backends import load_study

    cfg, summary, _ = published
    source = load_config(ROOT / cfg.source)
    study = load_study(source.name, f"sqlite:///{ROOT / source.storage_url.split('///')[1]}")
    used = {t.user_attrs.get("seed") for t in study.get_trials(deepcopy=False)}
    assert not used & set(cfg.seeds)  # no search or confirm run trained these seeds
    assert len(summary.rows) >= 3 and {"log", "nearest"} <= {r.name for r in summary.rows}
    for row in summary.rows:
        assert row.full.n == len(cfg.seeds) >= 3
        for seed in cfg.seeds:
            folder = ROOT / cfg.run_dir(row.name, seed)
            result = json.loads((folder / "result.json").read_text())
            assert result["test_accuracy"] is not None and result["dataset"] == "fashion-mnist"
            spec = PatternSpec.load(folder / "spec.json")
            assert spec.hash == row.hash and spec.origin["scaled_from"]
            assert spec.arch.growth == cfg.train["growth"] >= 2 * 8


def test_the_transfer_readme_numbers_are_its_runs(published):
    from nas.results.transfer import tables
    from nas.text_tables import markdown_table

    _, s, readme = published
    patterns, versus = tables(s)
    assert markdown_table(*patterns) in readme
    assert markdown_table(*versus) in readme
    rho = s.spearman
    assert f"Spearman {rho.value:+.2f} {rho.interval('+.2f')}" in readme
    assert f"p = {s.spearman_p:.3f}" in readme
    assert f"brief accuracy vs full-scale mean: {s.spearman_brief:+.2f}" in readme
    assert f"F test p = {s.design.p_value:.3f}" in readme
    assert f"{s.seconds_per_epoch:.0f} s per epoch" in readme
    assert f"{s.run_hours:.2f} h of runs" in readme
    for row in s.rows:
        assert f"| {row.name} | {row.hash} |" in readme


@pytest.mark.slow
def test_the_runner_fails_loudly_then_trains_what_is_missing_once(tmp_path):
    """A run that fails is logged and fails the command (nothing silently dropped); the same
    command later trains it, and a third finds nothing to do."""
    from nas.errors import UserError
    from nas.search.experiment.transfer import train_all
    from search_spaces import template_pattern
    from tests.test_handoff import searched

    good = {"dataset": "synthetic", "val_size": 64, "steps": 3, "batch_size": 16,
            "growth": 4, "device": "cpu"}
    cfg = TransferConfig("unused.toml", tmp_path, 1, (100,), (("log", 0),),
                         {**good, "epochs": 0})
    tmp_path.joinpath("specs").mkdir()
    searched(template_pattern("log", [4])).save(cfg.spec_path("log"))
    with pytest.raises(UserError, match="1 of 1 runs failed"):
        train_all(cfg)
    assert "FAILED log seed 100" in (tmp_path / "run.log").read_text()
    ok = TransferConfig("unused.toml", tmp_path, 1, (100,), (("log", 0),), good)
    train_all(ok)
    result = json.loads((ok.run_dir("log", 100) / "result.json").read_text())
    assert result["test_accuracy"] is not None and result["seed"] == 100
    train_all(ok)
    assert (tmp_path / "run.log").read_text().splitlines()[-1].endswith("0 of 1 runs to go")


@pytest.mark.parametrize("text, message", [
    (None, "cannot read"),
    ("source = [", "not valid TOML"),
    ('source = "s"\nout = "o"\nworkers = 2\nseeds = [1]\n[train]\n', "missing key 'patterns'"),
    ('source = "s"\nout = "o"\nworkers = 2\nseeds = [1, 1]\n[[patterns]]\nname = "a"\n'
     'trial = 0\n[train]\n', "repeats a seed"),
    ('source = "s"\nout = "o"\nworkers = 2\nseeds = [1]\n[[patterns]]\nname = "trial 1"\n'
     'trial = 0\n[[patterns]]\nname = "trial1"\ntrial = 1\n[train]\n', "share a run folder"),
])
def test_a_bad_transfer_config_is_one_clear_error_before_any_training(tmp_path, text, message):
    from nas.errors import ConfigError

    path = tmp_path / "t.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        TransferConfig.load(path)
