"""How far brief training can be trusted: the fidelity study and calibrate. The config and its
slots (each level's seeds its own, the reference scored on the test split); the statistics
against scipy and closed forms on fixed tables; the bootstrap; the recommendation on constructed
tables; real tiny studies, stopped and resumed, with exact slot counts."""
import itertools
import json
import math
import signal
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from scipy import stats

from nas.errors import ConfigError, UserError
from nas.results.fidelity_summary import (
    FidelityReport,
    LevelResult,
    fidelity_figure,
    fidelity_report,
    level_statistics,
    one_run_rho,
    recommend,
    seeds_to_reach,
    study_time,
)
from nas.search.config import LEVEL_SEEDS, Fidelity, FidelityLevel
from nas.search.experiment.fidelity import (
    Chosen,
    FidelityRun,
    FidelityTable,
    calibration_config,
    calibration_levels,
    fidelity_patterns,
    fidelity_slots,
    fidelity_table,
    start_fidelity,
)
from nas.search.record import SlotKind, TrialRecord
from nas.stats import Estimate, kendall, spearman_brown
from search_spaces import distance_stats, template_pattern
from tests.test_faults import finish, skipnas, wait_mid_trial
from tests.testing import run_cli, tiny_config, tiny_raw, write_toml

ROOT = Path(__file__).resolve().parents[1]
LEVELS = [{"name": "brief", "epochs": 1}, {"name": "more", "epochs": 1, "train_size": 256},
          {"name": "long", "epochs": 2, "train_size": 512}]


def fidelity_raw(folder: Path, **fidelity):
    return tiny_raw(folder, name="fid", trials=0, search_space={"name": "offsets", "layers": [8]},
                    data={"train_size": 128, "val_size": 128},
                    fidelity={"levels": LEVELS, "seeds": 3, "top_seeds": 3,
                              "templates": ["log", "nearest"], "spread": 1, **fidelity})


def fidelity_config(folder: Path, **fidelity):
    return tiny_config(folder, **{k: v for k, v in fidelity_raw(folder, **fidelity).items()
                                  if k != "storage"})


# --- the config ----------------------------------------------------------------------------

def test_a_level_overrides_the_search_fidelity():
    base = Fidelity(epochs=None, steps=300, train_size=4096, val_size=5000)
    assert FidelityLevel("a").over(base) == base
    assert FidelityLevel("b", epochs=3, train_size="all", val_size=100, batch_size=64).over(
        base) == Fidelity(3, None, None, 100, 64)
    assert FidelityLevel("c", train_size=16384).over(base).steps == 300


def test_a_fidelity_without_a_batch_size_or_test_split_stores_as_records_did_before():
    old = {"epochs": 2, "steps": None, "train_size": 4096, "val_size": 5000}
    assert Fidelity.from_dict(old).to_dict() == old
    assert Fidelity.from_dict({**old, "batch_size": 64}).to_dict()["batch_size"] == 64
    test = Fidelity.from_dict({**old, "eval_test": True})
    assert test.eval_test and test.to_dict()["eval_test"] is True
    assert test.describe().endswith(", scored on the test split")
    assert "test" not in Fidelity.from_dict(old).describe()


def test_the_levels_parse_from_toml_and_only_the_reference_is_scored_on_test(tmp_path):
    cfg = tiny_config(tmp_path, fidelity={"levels": LEVELS + [
        {"name": "big", "train_size": 1024, "batch_size": 64}]})
    assert [name for name, _ in cfg.fidelity_levels] == ["brief", "more", "long", "big"]
    data, training = cfg.at_fidelity(cfg.fidelity_levels[3][1])
    assert (data.train_size, training.batch_size, training.epochs) == (1024, 64, 2)
    assert cfg.at_fidelity(cfg.search_fidelity)[1].batch_size == 32  # the training's
    assert [f.eval_test for _, f in cfg.fidelity_levels] == [False, False, False, True]


@pytest.mark.parametrize("fidelity, message", [
    ({"levels": LEVELS[:2]}, "fidelity.levels: needs 3..100 levels"),
    ({"levels": LEVELS, "seeds": 2, "top_seeds": 3}, "fidelity.seeds: must be in 3..100"),
    ({"levels": LEVELS, "seeds": 4, "top_seeds": 3}, "fidelity.top_seeds: must be in seeds"),
    ({"levels": [*LEVELS[:2], {**LEVELS[2], "name": "brief"}]}, "level names must be distinct"),
    ({"levels": [*LEVELS, {"name": "same", "epochs": 1}]},
     "two levels train at the same fidelity"),
    ({"levels": LEVELS, "bench_best": 3}, "fidelity.bench: bench_best needs a benchmark"),
    ({"levels": [*LEVELS, {"name": "x", "batch_size": 0}]},
     "fidelity.levels[3] (x): batch_size"),
    ({"levels": [*LEVELS, {"name": "x", "train_size": "most"}]},
     "fidelity.levels[3].train_size: expected"),
    ({"levels": [{"name": "x", "colour": 1}]}, "fidelity.levels[0].colour: unknown key"),
])
def test_bad_fidelity_settings_are_one_error_naming_the_key(tmp_path, fidelity, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        tiny_config(tmp_path, fidelity=fidelity)


def test_the_published_config_is_of_this_design_and_the_old_one_is_refused():
    """Three levels or more, three seeds or more each; the published study's old setting (two
    seeds a level) is refused when the file is read, before anything trains."""
    import tomllib

    from nas.search.config import config_from_dict, load_config

    cfg = load_config(ROOT / "studies/fidelity_fashion_mnist.toml")
    assert len(cfg.fidelity_levels) >= 3 and cfg.fidelity.seeds >= 3
    assert cfg.fidelity_levels[-1][1].eval_test
    raw = tomllib.loads((ROOT / "studies/fidelity_fashion_mnist.toml").read_text())
    raw["fidelity"] |= {"seeds": 2, "top_seeds": 3}
    with pytest.raises(ConfigError, match="fidelity.seeds: must be in 3..100"):
        config_from_dict(raw, "old.toml")


# --- patterns and slots --------------------------------------------------------------------

def test_the_patterns_are_the_templates_then_a_spread_over_mean_distance(tmp_path):
    cfg = fidelity_config(tmp_path, spread=4)
    chosen = fidelity_patterns(cfg)
    assert [c.label for c in chosen] == ["log", "nearest"] + ["spread"] * 4
    assert chosen[0].pattern == template_pattern("log", [8])
    assert len({c.pattern.hash for c in chosen}) == 6
    space = cfg.search_space.build()
    pool = sorted((p for p in space.all_patterns()
                   if p.hash not in {chosen[0].pattern.hash, chosen[1].pattern.hash}),
                  key=lambda p: (distance_stats(p).mean, p.hash))
    spread = [c.pattern for c in chosen[2:]]
    assert spread[0] == pool[0] and spread[-1] == pool[-1]  # both ends of the range
    means = [distance_stats(p).mean for p in spread]
    assert means == sorted(means)


def test_the_bench_best_come_from_the_benchmark_by_mean(tmp_path):
    bench = ROOT / "studies/results/bench_fashion_mnist"
    cfg = tiny_config(tmp_path, search_space={"name": "offsets", "layers": [15]},
                      fidelity={"levels": LEVELS, "templates": [], "bench": str(bench),
                                "bench_best": 3})
    from nas.search.experiment.bench import load_bench
    best = [e.pattern.hash for e in load_bench(bench).ranked()[:3]]
    assert [(c.label, c.pattern.hash) for c in fidelity_patterns(cfg)] == \
        [(f"bench #{i}", h) for i, h in enumerate(best, start=1)]


def _seeds_by_level(cfg, slots):
    names = {json.dumps(f.to_dict(), sort_keys=True): name for name, f in cfg.fidelity_levels}
    out = {}
    for s in slots:
        out.setdefault(names[json.dumps(s.fidelity, sort_keys=True)], set()).add(s.seed)
    return out


@pytest.mark.parametrize("seed", [0, 7, 2 ** 32 - 1500])
def test_every_level_trains_seeds_of_its_own(tmp_path, seed):
    cfg = replace(fidelity_config(tmp_path, seeds=3, top_seeds=4), seed=0)
    cfg = replace(cfg, training=replace(cfg.training, seed=seed))
    slots = fidelity_slots(cfg)
    assert len(slots) == 3 * (3 + 3 + 4)  # 3 patterns, 3 seeds at brief and more, 4 at long
    assert all(s.kind == SlotKind.FIDELITY for s in slots)
    seeds = _seeds_by_level(cfg, slots)
    assert {k: len(v) for k, v in seeds.items()} == {"brief": 3, "more": 3, "long": 4}
    for a, b in itertools.combinations(seeds.values(), 2):
        assert not a & b  # no two levels share a seed: no shared initial weights
    assert seeds["more"] == {(seed + LEVEL_SEEDS + k) % 2 ** 32 for k in range(3)}
    assert seeds["long"] == {(seed + 2 * LEVEL_SEEDS + k) % 2 ** 32 for k in range(4)}
    # every (pattern, level) has its seeds once
    assert len({(s.hash, s.seed, json.dumps(s.fidelity)) for s in slots}) == len(slots)


def test_slots_are_seed_major_and_only_the_reference_is_scored_on_test(tmp_path):
    cfg = fidelity_config(tmp_path, seeds=3, top_seeds=4)
    slots = fidelity_slots(cfg)
    k = [s.seed % LEVEL_SEEDS for s in slots]  # each level's k-th seed
    assert k == sorted(k) and k[-3:] == [3, 3, 3]  # the 4th seed: the reference's alone
    reference = cfg.fidelity_levels[-1][1].to_dict()
    assert Counter(s.fidelity == reference for s in slots) == {True: 12, False: 18}
    assert all(Fidelity.from_dict(s.fidelity).eval_test == (s.fidelity == reference)
               for s in slots)
    assert [s.baseline for s in slots[:9:3]] == ["log", "nearest", None]


# --- statistics ----------------------------------------------------------------------------

def test_kendall_and_spearman_brown_by_hand():
    assert kendall(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])) == pytest.approx(4 / 6)
    x, y = np.array([3., 1, 4, 1, 5, 9, 2, 6]), np.array([2., 7, 1, 8, 2, 8, 1, 8])
    assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman_brown(0.5, 2) == pytest.approx(2 / 3)
    assert spearman_brown(0.2, 4) == pytest.approx(0.8 / 1.6)
    assert math.isnan(spearman_brown(-1.0, 2))  # two seeds that rank in reverse


def _table(levels: dict[str, list[list[float]]], seconds: dict[str, float],
           shared: bool = False) -> FidelityTable:
    """A fidelity table from accuracies by level: one row per pattern, one column per seed;
    each level with seeds of its own (``shared``: the same seed numbers at every level) and
    the last scored on the test split (its validation accuracies are other numbers, 0.5 less,
    that the report must not read)."""
    names = list(levels)
    patterns = tuple(Chosen(f"p{i}", template_pattern("log", [4 + i]))
                     for i in range(len(levels[names[0]])))
    top = names[-1]
    runs = tuple(FidelityRun(name, c.pattern.hash, (0 if shared else LEVEL_SEEDS * i) + seed,
                             acc - 0.5 if name == top else acc, seconds[name],
                             acc if name == top else None)
                 for i, (name, rows) in enumerate(levels.items())
                 for c, row in zip(patterns, rows) for seed, acc in enumerate(row))
    fids = tuple((name, Fidelity(i + 1, None, 100, 50, eval_test=name == top))
                 for i, name in enumerate(names))
    return FidelityTable(fids, patterns, runs, 0)


FIXED = {
    "cheap": [[0.50, 0.52, 0.51], [0.55, 0.51, 0.50], [0.60, 0.62, 0.64], [0.58, 0.66, 0.61],
              [0.70, 0.68, 0.66], [0.64, 0.60, 0.67]],
    "mid": [[0.61, 0.60, 0.63], [0.62, 0.64, 0.61], [0.70, 0.69, 0.66], [0.66, 0.68, 0.70],
            [0.72, 0.74, 0.73], [0.69, 0.65, 0.71]],
    "top": [[0.80, 0.82, 0.81], [0.83, 0.82, 0.84], [0.86, 0.85, 0.87], [0.84, 0.85, 0.86],
            [0.90, 0.88, 0.89], [0.85, 0.83, 0.88]],
}
COST = {"cheap": 1.0, "mid": 4.0, "top": 10.0}


def _by_scipy(a: np.ndarray) -> tuple[float, float]:
    """The mean Spearman over every pair of seeds (columns), by scipy, and the Spearman-Brown
    reliability of the mean over them in closed form."""
    r = np.mean([stats.spearmanr(a[:, i], a[:, j]).statistic
                 for i, j in itertools.combinations(range(a.shape[1]), 2)])
    k = a.shape[1]
    return r, k * r / (1 + (k - 1) * r)


def test_the_report_of_a_fixed_table_matches_scipy_and_the_closed_forms():
    report = fidelity_report(_table(FIXED, COST), resamples=300)
    a = {k: np.array(v) for k, v in FIXED.items()}
    means = {k: v.mean(axis=1) for k, v in a.items()}
    r_top, rel_top = _by_scipy(a["top"])
    assert report.independent
    for lv in report.levels[:-1]:
        r, rel = _by_scipy(a[lv.name])
        raw = stats.spearmanr(means[lv.name], means["top"]).statistic
        cap = math.sqrt(rel * rel_top)
        assert lv.seed_spearman.value == pytest.approx(r)
        assert lv.reliability.value == pytest.approx(rel)
        assert lv.vs_reference.value == pytest.approx(raw)
        assert lv.kendall_vs_reference.value == pytest.approx(
            stats.kendalltau(means[lv.name], means["top"]).statistic)
        assert lv.cap.value == pytest.approx(cap)
        assert lv.disattenuated.value == pytest.approx(raw / cap)
        assert lv.vs_reference.low <= lv.vs_reference.high  # known: no undefined resample
        for e in (lv.seed_spearman, lv.reliability, lv.cap, lv.disattenuated):
            assert e.low <= e.high or math.isnan(e.low)
    top = report.levels[-1]
    assert top.seed_spearman.value == pytest.approx(r_top)
    assert top.reliability.value == pytest.approx(rel_top)
    assert math.isnan(top.vs_reference.value) and math.isnan(top.disattenuated.value)
    assert top.mean_accuracy == pytest.approx(a["top"].mean())  # the test accuracies
    cheap = report.levels[0]
    within = a["cheap"] - means["cheap"][:, None]
    assert cheap.seed_std == pytest.approx(math.sqrt((within ** 2).sum() / (6 * 2)))
    assert cheap.spread == pytest.approx(means["cheap"].std(ddof=1))
    assert (cheap.seconds, top.seconds, top.seeds) == (1.0, 10.0, 3)
    again = FidelityReport.from_json(json.loads(json.dumps(report.to_json())))
    assert again.table() == report.table() and again.patterns == report.patterns
    assert again.independent


def test_a_study_whose_levels_share_seeds_is_reported_as_inflated():
    report = fidelity_report(_table(FIXED, COST, shared=True), resamples=50)
    assert not report.independent and "are inflated" in report.text()


def test_one_bootstrap_resample_is_the_statistics_of_the_data_it_draws():
    """With one resample the interval is that resample's value: the patterns drawn once for
    all levels, every seed kept, recomputed by scipy on the drawn data."""
    acc = {k: np.array(v) for k, v in FIXED.items()}
    for seed in range(20):
        got = level_statistics(acc, "top", resamples=1, seed=seed)
        rows = np.random.default_rng(seed).integers(0, 6, 6)
        drawn = {k: a[rows] for k, a in acc.items()}
        r = {k: np.mean([stats.spearmanr(drawn[k][:, p], drawn[k][:, q]).statistic
                         for p, q in itertools.combinations(range(3), 2)]) for k in acc}
        # Spearman-Brown; no meaning at r <= -1/(k - 1)
        rel = {k: 3 * r[k] / (1 + 2 * r[k]) if r[k] > -0.5 else math.nan for k in acc}
        for k in ("cheap", "mid"):
            raw = stats.spearmanr(drawn[k].mean(axis=1), drawn["top"].mean(axis=1)).statistic
            want = {"seed_spearman": r[k], "reliability": rel[k], "vs_reference": raw,
                    "cap": math.sqrt(rel[k] * rel["top"]) if min(rel[k], rel["top"]) > 0
                    else math.nan}
            want["disattenuated"] = raw / want["cap"]
            for stat, value in want.items():
                e = got[k][stat]
                if math.isfinite(value):
                    assert e.low == pytest.approx(value) and e.high == pytest.approx(value)
                else:
                    assert math.isnan(e.low)


def test_the_bootstrap_is_determined_by_its_seed():
    acc = {k: np.array(v) for k, v in FIXED.items()}
    a, b = (level_statistics(acc, "top", resamples=200, seed=3) for _ in range(2))
    assert a == b
    other = level_statistics(acc, "top", resamples=200, seed=4)
    assert all(other[k][s].value == a[k][s].value or math.isnan(a[k][s].value)
               for k in a for s in a[k])
    assert other != a  # another draw: other intervals


def test_an_interval_undefined_in_many_resamples_is_unknown():
    """A level of pure noise has no positive reliability in many resamples: its disattenuated
    Spearman's interval is unknown, not the interval of the resamples where it happens to be
    defined."""
    rng = np.random.default_rng(0)
    top = np.linspace(0.8, 0.9, 10)[:, None] + rng.normal(0, 0.002, (10, 3))
    acc = {"noise": rng.normal(0.6, 0.05, (10, 3)), "top": top}
    got = level_statistics(acc, "top", resamples=300)["noise"]
    assert math.isfinite(got["vs_reference"].low)
    assert math.isnan(got["disattenuated"].low) and math.isnan(got["disattenuated"].high)


def _level(name: str, rho: float, seconds: float, dis: float, seed_r: float = 0.81):
    return LevelResult(name, name, 3, seconds, 0.8, 0.01, 0.01,
                       Estimate(seed_r, seed_r - 0.1, seed_r + 0.1),
                       Estimate(0.75, 0.6, 0.85), Estimate(rho, rho - 0.1, rho + 0.1),
                       Estimate(rho, rho, rho), Estimate(0.8, 0.7, 0.9),
                       Estimate(dis, dis - 0.1, dis + 0.1))


def test_one_run_of_a_level_is_priced_by_its_own_seed_noise():
    """Review: a cheap level whose runs are nearly pure noise can still have a high
    disattenuated Spearman (a small correlation over a small reliability); a search trains
    each pattern once, so one run's agreement is disattenuated x sqrt(seed-to-seed)."""
    noisy = _level("noisy", 0.3, 1, 0.95, seed_r=0.09)
    assert one_run_rho(noisy) == pytest.approx(0.95 * 0.3)
    assert math.isnan(one_run_rho(_level("x", 0.3, 1, 0.95, seed_r=-0.1)))
    # Spearman-Brown: the mean of n seeds has reliability n r / (1 + (n - 1) r); it must reach
    # (0.8 / 0.95)^2 = 0.709: n = 25 at r = 0.09 (0.7116), not 24 (0.7036).
    assert seeds_to_reach(noisy, 0.8) == 25
    assert seeds_to_reach(_level("y", 0.3, 1, 0.7), 0.8) is None  # disattenuated below target


def test_the_recommendation_is_the_cheapest_level_one_run_of_which_reaches_the_target():
    # one run: a 0.6 x 0.9 = 0.54, b 0.95 x 0.9 = 0.855, c 0.99 x 0.9 = 0.891
    levels = [_level("a", 0.5, 1, 0.6), _level("b", 0.7, 4, 0.95), _level("c", 0.8, 8, 0.99),
              _level("ref", math.nan, 20, math.nan)]
    name, verdict = recommend(levels, 0.8)
    assert name == "b" and verdict.startswith("Recommended: b") and "0.20x" in verdict
    assert "one run of it ranks like ref at about Spearman +0.85 >= 0.8 (disattenuated +0.95 " \
        "[+0.85, +1.05] x sqrt of its seed-to-seed Spearman +0.81" in verdict
    assert "raw +0.70" in verdict
    # at the lower ends: 0.85 x sqrt(0.71) = 0.72 < 0.8
    assert "), though not at the lower ends of the intervals, at 0.20x" in verdict
    name, verdict = recommend(levels, 0.88)
    assert name == "c"
    name, verdict = recommend(levels, 0.5)  # a: 0.6 x 0.9; lower ends 0.5 x sqrt(0.71) = 0.42
    assert name == "a" and "though not at the lower ends" in verdict
    sure = replace(levels[0], disattenuated=Estimate(0.6, 0.6, 0.6),
                   seed_spearman=Estimate(0.81, 0.81, 0.81))
    name, verdict = recommend([sure, *levels[1:]], 0.5)
    assert name == "a" and "though" not in verdict
    unknown = replace(levels[1], disattenuated=Estimate(0.95, math.nan, math.nan))
    name, verdict = recommend([levels[0], unknown, *levels[2:]], 0.8)
    assert name == "b" and "+0.95 [-, -]" in verdict and "though an interval is not known" \
        in verdict
    # the noisy cheap level is not picked though its disattenuated Spearman is the highest
    name, _ = recommend([_level("noisy", 0.3, 0.5, 0.99, seed_r=0.09), *levels], 0.8)
    assert name == "b"


def test_when_no_level_reaches_the_target_the_verdict_says_what_the_best_reaches():
    levels = [_level("a", 0.3, 1, 0.4), _level("b", 0.6, 4, 0.85, seed_r=0.36),
              _level("u", 0.7, 2, math.nan), _level("ref", math.nan, 20, math.nan)]
    name, verdict = recommend(levels, 0.8)
    assert name is None
    assert verdict.startswith("No level's single run ranks like ref at Spearman >= 0.8: the "
                              "best, b")
    assert "about +0.51 (disattenuated +0.85 [+0.75, +0.95]" in verdict
    # (0.8 / 0.85)^2 = 0.886 of reliability at r = 0.36: n = 14 (0.887)
    assert "A mean over 14 seeds of b would reach it" in verdict
    assert "reliability 0.75 [0.60, 0.85]" in verdict
    assert "Not judged: u" in verdict  # raw 0.7, but no disattenuated value


def test_a_constructed_table_where_the_cheap_level_is_noise_recommends_nothing():
    rng = np.random.default_rng(0)
    top = np.linspace(0.80, 0.90, 12)[:, None] + rng.normal(0, 0.001, (12, 3))
    cheap = rng.normal(0.6, 0.05, (12, 3))  # unrelated to the reference
    mid = top - 0.1 + rng.normal(0, 0.002, (12, 3))  # the reference's ranking
    report = fidelity_report(_table({"cheap": cheap.tolist(), "mid": mid.tolist(),
                                     "top": top.tolist()}, {"cheap": 1, "mid": 3, "top": 9}),
                             resamples=200)
    assert report.recommended == "mid"
    other = rng.normal(0.7, 0.05, (12, 3))
    report = fidelity_report(_table({"cheap": cheap.tolist(), "other": other.tolist(),
                                     "top": top.tolist()}, {"cheap": 1, "other": 2, "top": 9}),
                             resamples=200)
    assert report.recommended is None and report.levels[-1].reliability.value > 0.9


def test_an_old_report_file_reads_with_its_missing_numbers_unknown():
    """The published report predates seeds of each level's own: it still reads, and says its
    correlations are inflated."""
    old = json.loads((ROOT / "studies/results/fidelity_fashion_mnist/fidelity.json").read_text())
    report = FidelityReport.from_json(old)
    assert not report.independent and "are inflated" in report.text()
    bench = report.levels[0]
    assert bench.seed_spearman.value == old["levels"][0]["seed_spearman"]
    assert math.isnan(bench.seed_spearman.low) and math.isnan(bench.cap.value)
    headers, rows = report.table()
    assert rows[0][headers.index("disattenuated rho")] == "-"


# --- real tiny studies -----------------------------------------------------------------------

def _wait_for_study(name, url, timeout=120):
    deadline = time.time() + timeout
    while True:
        try:
            return optuna.load_study(study_name=name, storage=url)
        except KeyError:  # not created yet
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def _counts(study):
    trials = study.get_trials(deepcopy=False)
    fidelity = [TrialRecord.from_trial(t) for t in trials if t.state == TrialState.COMPLETE]
    return Counter((r.hash, r.seed, json.dumps(r.fidelity, sort_keys=True)) for r in fidelity)


@pytest.mark.slow
def test_a_fidelity_study_stopped_mid_trial_resumes_to_exactly_its_slots(tmp_path):
    raw = fidelity_raw(tmp_path)
    config = write_toml(tmp_path / "fid.toml", raw)
    cfg = tiny_config(tmp_path, **{k: v for k, v in raw.items() if k != "storage"})
    wanted = fidelity_slots(cfg)
    assert len(wanted) == 3 * 3 * 3  # 3 patterns, 3 levels, 3 seeds
    first = skipnas("fidelity", str(config), "--out", str(tmp_path / "out"))
    study = _wait_for_study("fid", cfg.storage_url)
    _, proc = wait_mid_trial(study, [first])
    proc.send_signal(signal.SIGTERM)
    assert finish([first])[0][0] == 128 + signal.SIGTERM
    done = run_cli("fidelity", str(config), "--out", str(tmp_path / "out"), "-q",
                   "--resamples", "100", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0 trials queued" in done.stdout  # the slots were all there: none queued twice
    counts = _counts(study)
    assert sorted(counts) == sorted((s.hash, s.seed, json.dumps(s.fidelity, sort_keys=True))
                                    for s in wanted)
    assert set(counts.values()) == {1}
    assert not study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    report = FidelityReport.from_json(json.loads((tmp_path / "out/fidelity.json").read_text()))
    assert [lv.name for lv in report.levels] == ["brief", "more", "long"]
    assert len(report.patterns) == 3 and report.left_out == 0 and report.pending == 0
    assert report.independent
    table = fidelity_table(study, cfg)
    assert len(table.runs) == 27 and all(r.seconds > 0 for r in table.runs)
    assert all((r.test_accuracy is not None) == (r.level == "long") for r in table.runs)
    again = run_cli("fidelity", str(config), "--report-only", "--out", str(tmp_path / "out2"),
                    "--resamples", "100", cwd=tmp_path)
    assert again.returncode == 0 and len(study.get_trials(deepcopy=False)) == \
        len(optuna.load_study(study_name="fid", storage=cfg.storage_url).trials)
    assert json.loads((tmp_path / "out2/fidelity.json").read_text())["levels"] == \
        json.loads((tmp_path / "out/fidelity.json").read_text())["levels"]


def test_the_reference_is_scored_on_the_test_split_and_the_others_on_validation(tmp_path):
    """A tiny study of three slots: a brief one, a reference one, and the same reference slot
    again (a twin: it reuses the result, its test accuracy too). The reference's test accuracy
    is that of the same training scored on the test split outside the study."""
    from nas.engine.spec import make_spec
    from nas.engine.train import train
    from nas.search.execution.worker import run_worker
    from nas.search.experiment.study import create_study
    from nas.search.slots import enqueue_slots
    from search_spaces import Pattern

    cfg = fidelity_config(tmp_path)
    (_, brief), _, (_, reference) = cfg.fidelity_levels
    slots = fidelity_slots(cfg)
    brief_slot = next(s for s in slots if s.fidelity == brief.to_dict())
    ref_slot = next(s for s in slots if s.fidelity == reference.to_dict())
    study = create_study(cfg)
    enqueue_slots(study, [brief_slot, ref_slot, ref_slot])
    run_worker(cfg, progress=False, study=study)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    b, r, twin = (TrialRecord.from_trial(t) for t in trials)
    assert b.test_accuracy is None and r.test_accuracy is not None
    assert twin.reused_from == trials[1].number and twin.test_accuracy == r.test_accuracy
    data, training = cfg.at_fidelity(reference)
    alone = train(make_spec(Pattern.from_dict(ref_slot.pattern), cfg.architecture), data,
                  replace(training, seed=ref_slot.seed), eval_test=True, progress=False).result
    assert (alone.val_accuracy, alone.test_accuracy) == (trials[1].values[0], r.test_accuracy)
    table = fidelity_table(study, cfg)
    assert table.accuracies("long") == {ref_slot.hash: {ref_slot.seed: r.test_accuracy}}
    assert table.accuracies("brief") == {brief_slot.hash: {brief_slot.seed: trials[0].values[0]}}


def test_start_fidelity_queues_each_slot_once(tmp_path):
    cfg = fidelity_config(tmp_path)
    study, queued = start_fidelity(cfg)
    assert queued == 27  # 3 patterns x 3 levels x 3 seeds
    assert start_fidelity(cfg)[1] == 0
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) == 27


def test_a_fidelity_study_cut_short_reports_the_seeds_every_pattern_has():
    table = _table(FIXED, COST)
    first = table.patterns[0].pattern.hash

    def without(keep):
        return FidelityTable(table.levels, table.patterns,
                             tuple(r for r in table.runs if keep(r)), 1)

    def third_top(r):
        return r.level == "top" and r.seed % LEVEL_SEEDS == 2

    # One pattern's third reference seed is missing: the reference is judged on two seeds.
    report = fidelity_report(without(lambda r: not (r.hash == first and third_top(r))),
                             resamples=50)
    assert len(report.patterns) == 6 and report.left_out == 0 and report.pending == 1
    assert [lv.seeds for lv in report.levels] == [3, 3, 2]
    assert "run the command again" in report.text()
    # Only one pattern has its third seed (the reviewer's case): still every pattern, 2 seeds.
    report = fidelity_report(without(lambda r: not (third_top(r) and r.hash != first)),
                             resamples=50)
    assert len(report.patterns) == 6 and report.levels[-1].seeds == 2
    # A pattern a level has not trained at all is left out, and said so.
    report = fidelity_report(without(lambda r: not (r.hash == first and r.level == "mid")),
                             resamples=50)
    assert len(report.patterns) == 5 and report.left_out == 1
    assert "1 patterns left out" in report.text()


def test_a_level_with_one_seed_so_far_reports_dashes_not_nan(recwarn):
    import re

    one = {k: [row[:1] for row in v] for k, v in FIXED.items()}
    report = fidelity_report(_table(one, COST), resamples=50)
    assert all(lv.seeds == 1 and math.isnan(lv.seed_std) for lv in report.levels)
    assert all(math.isnan(lv.seed_spearman.value) for lv in report.levels)
    assert not re.search(r"\bnan\b", report.text())
    assert report.recommended is None and "Not judged: cheap, mid" in report.verdict
    fidelity_figure(report)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_the_study_time_is_the_recommended_levels_cost_times_trials_over_workers():
    levels = [_level("a", 0.9, 30.0, 1.0), _level("ref", math.nan, 600.0, math.nan)]
    report = FidelityReport(tuple(levels), (), 0.8, "a", "", 0, 0, 10, True)
    assert study_time(report, 240, 2) == ("use a (a): 30.0 s per trial here, so 240 trials on "
                                          "2 workers take about 1.00 h")
    report = FidelityReport(tuple(levels), (), 0.95, None, "", 0, 0, 10, True)
    assert study_time(report, 12, 4).endswith("ref (ref): 600.0 s per trial here, so 12 "
                                              "trials on 4 workers take about 0.50 h")


def test_a_fidelity_config_needs_three_patterns_and_no_search_trials(tmp_path):
    raw = fidelity_raw(tmp_path, templates=["log"], spread=1)
    cfg = tiny_config(tmp_path, **{k: v for k, v in raw.items() if k != "storage"})
    with pytest.raises(UserError, match="2 distinct patterns; add templates"):
        start_fidelity(cfg)
    cfg = tiny_config(tmp_path, **{**{k: v for k, v in fidelity_raw(tmp_path).items()
                                      if k != "storage"}, "trials": 5})
    with pytest.raises(UserError, match="a fidelity study trains no search trials"):
        start_fidelity(cfg)
    assert not (tmp_path / "tiny.db").exists()  # refused before anything was written


def test_a_level_at_the_trainings_batch_size_is_the_training_fidelity(tmp_path):
    cfg = tiny_config(tmp_path, fidelity={"levels": [{"name": "a", "batch_size": 32},
                                                     {"name": "b", "epochs": 3},
                                                     {"name": "c", "epochs": 4}]})
    assert cfg.fidelity_levels[0][1] == cfg.search_fidelity
    with pytest.raises(ConfigError, match="two levels train at the same fidelity"):
        tiny_config(tmp_path, fidelity={"levels": [{"name": "a", "batch_size": 32},
                                                   {"name": "b", "epochs": 3},
                                                   {"name": "c"}]})  # only c scored on test


def test_calibrate_studies_are_named_after_their_settings(tmp_path):
    cfg = tiny_config(tmp_path, search_space={"name": "offsets", "layers": [8]})
    a, b = (calibration_config(cfg, 4, 3, 2944) for _ in range(2))
    assert a.name == b.name and a.name.startswith("tiny_calibrate_")
    other = tiny_config(tmp_path, search_space={"name": "offsets", "layers": [8]},
                        data={"train_size": 512})
    assert calibration_config(other, 4, 3, 2944).name != a.name
    assert calibration_config(cfg, 5, 3, 2944).name != a.name
    assert calibration_config(cfg, 4, 3, 2944).trials == 0


def test_report_only_reads_the_study_and_queues_nothing(tmp_path):
    raw = fidelity_raw(tmp_path)
    config = write_toml(tmp_path / "fid.toml", raw)
    cfg = tiny_config(tmp_path, **{k: v for k, v in raw.items() if k != "storage"})
    study, _ = start_fidelity(cfg)
    for t in study.get_trials(deepcopy=False)[:8]:  # half the slots gone: a fresh study's
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    before = len(study.get_trials(deepcopy=False))
    done = run_cli("fidelity", str(config), "--report-only", "--out", str(tmp_path / "o"),
                   cwd=tmp_path)
    assert done.returncode == 2 and "0 patterns with every seed" in done.stderr
    assert len(study.get_trials(deepcopy=False)) == before
    missing = run_cli("fidelity", str(config), "--report-only", "--storage",
                      f"sqlite:///{tmp_path}/none.db", cwd=tmp_path)
    assert missing.returncode == 2 and "fid" in missing.stderr


def test_calibration_levels_climb_by_images_then_by_epochs():
    brief = Fidelity(2, None, 4096, 2000)
    assert calibration_levels(brief, 58000) == [  # 65536 would be more than there is
        FidelityLevel("search"), FidelityLevel("images_x4", train_size=16384),
        FidelityLevel("all_images", train_size="all")]
    assert calibration_levels(brief, 200000) == [
        FidelityLevel("search"), FidelityLevel("images_x4", train_size=16384),
        FidelityLevel("images_x16", train_size=65536)]
    everything = Fidelity(3, None, None, 2000)
    assert calibration_levels(everything, 58000) == [
        FidelityLevel("search"), FidelityLevel("epochs_x2", epochs=6),
        FidelityLevel("epochs_x4", epochs=12)]
    most = Fidelity(2, None, 20000, 2000)  # the whole split at the first rung: then epochs
    assert calibration_levels(most, 58000) == [
        FidelityLevel("search"), FidelityLevel("all_images", train_size="all"),
        FidelityLevel("all_images_epochs_x2", epochs=4, train_size="all")]


@pytest.mark.slow
def test_calibrate_recommends_a_level_and_the_study_time_at_it(tmp_path):
    raw = tiny_raw(tmp_path, name="cal", trials=20, search_space={"name": "offsets",
                                                                    "layers": [8]},
                   data={"train_size": 64, "val_size": 128})
    config = write_toml(tmp_path / "cal.toml", raw)
    two = run_cli("calibrate", str(config), "--seeds", "2", cwd=tmp_path)
    assert two.returncode == 2 and "--seeds: must be >= 3" in two.stderr
    done = run_cli("calibrate", str(config), "--patterns", "3", "--seeds", "3", "-q",
                   "--resamples", "100", "--out", str(tmp_path / "cal"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    url = f"sqlite:///{tmp_path}/tiny.db"
    [name] = [n for n in optuna.get_all_study_names(url) if n.startswith("cal_calibrate_")]
    study = optuna.load_study(study_name=name, storage=url)
    # 3 patterns x 3 seeds at search (64 images), x4 (256) and x16 (1024, of 2944): 27 runs
    assert sum(_counts(study).values()) == 27
    done_runs = [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]
    seeds = {}
    for r in done_runs:
        level = Fidelity.from_dict(r.fidelity)
        seeds.setdefault(level, set()).add(r.seed)
        assert (r.test_accuracy is not None) == level.eval_test == (level.train_size == 1024)
    assert sum(map(len, seeds.values())) == len(set().union(*seeds.values())) == 9
    report = json.loads((tmp_path / "cal/fidelity.json").read_text())
    assert [lv["name"] for lv in report["levels"]] == ["search", "images_x4", "images_x16"]
    assert report["independent"] and "disattenuated rho" in done.stdout
    chosen = report["recommended"] or "images_x16"
    line = done.stdout.strip().splitlines()[-1]
    assert f" {chosen} (" in line and "20 trials on 1 workers take about" in line
    assert not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
