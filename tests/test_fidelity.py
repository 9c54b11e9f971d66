"""How far brief training can be trusted: the fidelity study and calibrate. The config and its
slots; the rank statistics against hand-computed values on a fixed table; the recommendation on
constructed tables; real tiny studies, stopped and resumed, with exact slot counts."""
import json
import math
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from scipy import stats

from nas.errors import ConfigError, UserError
from nas.results.fidelity_summary import (
    FidelityReport,
    fidelity_figure,
    fidelity_report,
    recommend,
    study_time,
)
from nas.search.config import Fidelity, FidelityLevel
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
from nas.stats import kendall, spearman_brown
from search_spaces import distance_stats, template_pattern
from tests.test_faults import finish, skipnas, wait_mid_trial
from tests.testing import run_cli, tiny_config, tiny_raw, write_toml

LEVELS = [{"name": "brief", "epochs": 1}, {"name": "long", "epochs": 2, "train_size": "all"}]


def fidelity_raw(folder: Path, **fidelity):
    return tiny_raw(folder, name="fid", trials=0, search_space={"name": "offsets", "layers": [8]},
                    data={"train_size": 128, "val_size": 128},
                    fidelity={"levels": LEVELS, "seeds": 2, "top_seeds": 2,
                              "templates": ["log", "nearest"], "spread": 2, **fidelity})


# --- the config ----------------------------------------------------------------------------

def test_a_level_overrides_the_search_fidelity():
    base = Fidelity(epochs=None, steps=300, train_size=4096, val_size=5000)
    assert FidelityLevel("a").over(base) == base
    assert FidelityLevel("b", epochs=3, train_size="all", val_size=100, batch_size=64).over(
        base) == Fidelity(3, None, None, 100, 64)
    assert FidelityLevel("c", train_size=16384).over(base).steps == 300


def test_a_fidelity_without_a_batch_size_stores_as_records_did_before_it_existed():
    old = {"epochs": 2, "steps": None, "train_size": 4096, "val_size": 5000}
    assert Fidelity.from_dict(old).to_dict() == old
    assert Fidelity.from_dict({**old, "batch_size": 64}).to_dict()["batch_size"] == 64


def test_the_levels_parse_from_toml_and_set_the_batch_size(tmp_path):
    cfg = tiny_config(tmp_path, fidelity={"levels": LEVELS + [
        {"name": "big", "train_size": 512, "batch_size": 64}]})
    assert [name for name, _ in cfg.fidelity_levels] == ["brief", "long", "big"]
    data, training = cfg.at_fidelity(cfg.fidelity_levels[2][1])
    assert (data.train_size, training.batch_size, training.epochs) == (512, 64, 2)
    assert cfg.at_fidelity(cfg.search_fidelity)[1].batch_size == 32  # the training's


@pytest.mark.parametrize("fidelity, message", [
    ({"levels": LEVELS[:1]}, "fidelity.levels: needs at least two levels"),
    ({"levels": [LEVELS[0], {**LEVELS[1], "name": "brief"}]}, "level names must be distinct"),
    ({"levels": [LEVELS[0], {"name": "same", "epochs": 1}]},
     "two levels train at the same fidelity"),
    ({"levels": LEVELS, "seeds": 3, "top_seeds": 2}, "fidelity.top_seeds: must be in seeds"),
    ({"levels": LEVELS, "bench_best": 3}, "fidelity.bench: bench_best needs a benchmark"),
    ({"levels": [LEVELS[0], {"name": "x", "batch_size": 0}]},
     "fidelity.levels[1] (x): batch_size"),
    ({"levels": [LEVELS[0], {"name": "x", "train_size": "most"}]},
     "fidelity.levels[1].train_size: expected"),
    ({"levels": [{"name": "x", "colour": 1}]}, "fidelity.levels[0].colour: unknown key"),
])
def test_bad_fidelity_settings_are_one_error_naming_the_key(tmp_path, fidelity, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        tiny_config(tmp_path, fidelity=fidelity)


# --- patterns and slots --------------------------------------------------------------------

def test_the_patterns_are_the_templates_then_a_spread_over_mean_distance(tmp_path):
    cfg = tiny_config(tmp_path, **{k: v for k, v in fidelity_raw(tmp_path, spread=4).items()
                                   if k in ("search_space", "fidelity")})
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
    root = Path(__file__).resolve().parents[1]
    bench = root / "studies/results/bench_fashion_mnist"
    cfg = tiny_config(tmp_path, search_space={"name": "offsets", "layers": [15]},
                      fidelity={"levels": LEVELS, "templates": [], "bench": str(bench),
                                "bench_best": 3})
    from nas.search.experiment.bench import load_bench
    best = [e.pattern.hash for e in load_bench(bench).ranked()[:3]]
    assert [(c.label, c.pattern.hash) for c in fidelity_patterns(cfg)] == \
        [(f"bench #{i}", h) for i, h in enumerate(best, start=1)]


def test_slots_are_seed_major_with_the_top_seeds_at_the_last_level(tmp_path):
    cfg = tiny_config(tmp_path, **{k: v for k, v in fidelity_raw(
        tmp_path, seeds=2, top_seeds=3, spread=1).items() if k in ("search_space", "fidelity")})
    slots = fidelity_slots(cfg)
    assert len(slots) == 3 * (2 + 3)  # 3 patterns, 2 seeds at brief and 3 at long
    assert [s.seed for s in slots] == sorted(s.seed for s in slots)
    assert all(s.kind == SlotKind.FIDELITY for s in slots)
    brief, long = (f.to_dict() for _, f in cfg.fidelity_levels)
    assert Counter((s.seed, s.fidelity == long) for s in slots) == \
        {(0, False): 3, (0, True): 3, (1, False): 3, (1, True): 3, (2, True): 3}
    assert [s.baseline for s in slots[:6:2]] == ["log", "nearest", None]
    assert brief != long


# --- statistics ----------------------------------------------------------------------------

def test_kendall_and_spearman_brown_by_hand():
    assert kendall(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])) == pytest.approx(4 / 6)
    x, y = np.array([3., 1, 4, 1, 5, 9, 2, 6]), np.array([2., 7, 1, 8, 2, 8, 1, 8])
    assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman_brown(0.5, 2) == pytest.approx(2 / 3)
    assert spearman_brown(0.2, 4) == pytest.approx(0.8 / 1.6)
    assert math.isnan(spearman_brown(-1.0, 2))  # two seeds that rank in reverse


def _table(levels: dict[str, list[list[float]]], seconds: dict[str, float]) -> FidelityTable:
    """A fidelity table from accuracies by level: one row per pattern, one column per seed."""
    names = list(levels)
    patterns = tuple(Chosen(f"p{i}", template_pattern("log", [4 + i]))
                     for i in range(len(levels[names[0]])))
    runs = tuple(FidelityRun(name, c.pattern.hash, seed, acc, seconds[name])
                 for name, rows in levels.items() for c, row in zip(patterns, rows)
                 for seed, acc in enumerate(row))
    fids = tuple((name, Fidelity(i + 1, None, 100, 50)) for i, name in enumerate(names))
    return FidelityTable(fids, patterns, runs, 0)


FIXED = {
    "cheap": [[0.50, 0.52], [0.55, 0.51], [0.60, 0.62], [0.58, 0.66], [0.70, 0.68]],
    "mid": [[0.61, 0.60], [0.62, 0.64], [0.70, 0.69], [0.66, 0.68], [0.72, 0.74]],
    "top": [[0.80, 0.82, 0.81], [0.83, 0.82, 0.84], [0.86, 0.85, 0.87], [0.84, 0.85, 0.86],
            [0.90, 0.88, 0.89]],
}


def test_the_report_of_a_fixed_table_matches_hand_computed_statistics():
    report = fidelity_report(_table(FIXED, {"cheap": 1.0, "mid": 4.0, "top": 10.0}),
                             resamples=300)
    cheap, mid, top = report.levels
    means = {k: np.mean(v, axis=1) for k, v in FIXED.items()}
    # cheap means 0.51 0.53 0.61 0.62 0.69; top 0.81 0.83 0.86 0.85 0.89: one swapped pair
    assert cheap.vs_reference.value == pytest.approx(0.9)
    assert cheap.vs_reference.value == pytest.approx(
        stats.spearmanr(means["cheap"], means["top"]).statistic)
    assert cheap.kendall_vs_reference.value == pytest.approx(0.8)
    assert mid.vs_reference.value == pytest.approx(1.0)  # mid: 0.605 0.63 0.695 0.67 0.73
    # seed-to-seed: cheap's seeds rank 1 2 4 3 5 and 2 1 3 4 5 -> rho = 1 - 6*4/(5*24) = 0.8
    assert cheap.seed_spearman == pytest.approx(0.8)
    assert cheap.reliability == pytest.approx(2 * 0.8 / 1.8)
    pairs = [stats.spearmanr(np.array(FIXED["top"])[:, i], np.array(FIXED["top"])[:, j])
             .statistic for i, j in ((0, 1), (0, 2), (1, 2))]
    assert top.seed_spearman == pytest.approx(np.mean(pairs))
    within = np.array(FIXED["cheap"]) - means["cheap"][:, None]
    assert cheap.seed_std == pytest.approx(math.sqrt((within ** 2).sum() / 5))
    assert cheap.spread == pytest.approx(means["cheap"].std(ddof=1))
    assert (cheap.seconds, top.seconds, top.seeds) == (1.0, 10.0, 3)
    assert cheap.vs_reference.low <= 0.9 <= cheap.vs_reference.high
    assert math.isnan(top.vs_reference.value)
    assert report.recommended == "cheap"  # both reach 0.8: the cheaper one
    again = FidelityReport.from_json(json.loads(json.dumps(report.to_json())))
    assert again.table() == report.table() and again.patterns == report.patterns


def _level(name: str, rho: float, seconds: float):
    from nas.results.fidelity_summary import LevelResult
    from nas.stats import Estimate
    return LevelResult(name, name, 2, seconds, 0.8, 0.01, 0.01, 0.5, 0.6,
                       Estimate(rho, rho - 0.1, rho + 0.1), Estimate(rho, rho, rho))


def test_the_recommendation_is_the_cheapest_level_that_reaches_the_target():
    levels = [_level("a", 0.5, 1), _level("b", 0.85, 4), _level("c", 0.95, 8),
              _level("ref", math.nan, 20)]
    name, verdict = recommend(levels, 0.8)
    assert name == "b" and verdict.startswith("Recommended: b") and "0.20x" in verdict
    name, verdict = recommend(levels, 0.9)
    assert name == "c"


def test_when_no_level_reaches_the_target_the_verdict_says_what_the_best_reaches():
    levels = [_level("a", 0.3, 1), _level("b", 0.6, 4), _level("ref", math.nan, 20)]
    name, verdict = recommend(levels, 0.8)
    assert name is None
    assert verdict.startswith("No level ranks like ref at Spearman >= 0.8: the best, b")
    assert "+0.60 [+0.50, +0.70]" in verdict and "reliability 0.60" in verdict


def test_a_constructed_table_where_the_cheap_level_is_noise_recommends_nothing():
    rng = np.random.default_rng(0)
    top = np.linspace(0.80, 0.90, 12)[:, None] + rng.normal(0, 0.001, (12, 3))
    cheap = rng.normal(0.6, 0.05, (12, 2))  # unrelated to the reference
    mid = top[:, :2] - 0.1 + rng.normal(0, 0.002, (12, 2))  # the reference's ranking
    report = fidelity_report(_table({"cheap": cheap.tolist(), "mid": mid.tolist(),
                                     "top": top.tolist()}, {"cheap": 1, "mid": 3, "top": 9}),
                             resamples=200)
    assert report.recommended == "mid"
    report = fidelity_report(_table({"cheap": cheap.tolist(), "top": top.tolist()},
                                    {"cheap": 1, "top": 9}), resamples=200)
    assert report.recommended is None and report.levels[-1].reliability > 0.9


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
    assert len(wanted) == 4 * 2 * 2  # 4 patterns, 2 levels, 2 seeds
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
    assert [lv.name for lv in report.levels] == ["brief", "long"]
    assert len(report.patterns) == 4 and report.left_out == 0 and report.pending == 0
    table = fidelity_table(study, cfg)
    assert len(table.runs) == 16 and all(r.seconds > 0 for r in table.runs)
    again = run_cli("fidelity", str(config), "--report-only", "--out", str(tmp_path / "out2"),
                    "--resamples", "100", cwd=tmp_path)
    assert again.returncode == 0 and len(study.get_trials(deepcopy=False)) == \
        len(optuna.load_study(study_name="fid", storage=cfg.storage_url).trials)
    assert json.loads((tmp_path / "out2/fidelity.json").read_text())["levels"] == \
        json.loads((tmp_path / "out/fidelity.json").read_text())["levels"]


def test_start_fidelity_queues_each_slot_once(tmp_path):
    raw = fidelity_raw(tmp_path)
    cfg = tiny_config(tmp_path, **{k: v for k, v in raw.items() if k != "storage"})
    study, queued = start_fidelity(cfg)
    assert queued == 16
    assert start_fidelity(cfg)[1] == 0
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) == 16


def test_a_fidelity_study_cut_short_reports_the_seeds_every_pattern_has():
    table = _table(FIXED, {"cheap": 1.0, "mid": 4.0, "top": 10.0})
    first = table.patterns[0].pattern.hash

    def without(keep):
        return FidelityTable(table.levels, table.patterns,
                             tuple(r for r in table.runs if keep(r)), 1)

    # One pattern's third reference seed is missing: the reference is judged on two seeds.
    report = fidelity_report(without(lambda r: not (r.hash == first and r.level == "top" and
                                                    r.seed == 2)), resamples=50)
    assert len(report.patterns) == 5 and report.left_out == 0 and report.pending == 1
    assert [lv.seeds for lv in report.levels] == [2, 2, 2]
    assert "run the command again" in report.text()
    # Only one pattern has its third seed (the reviewer's case): still every pattern, 2 seeds.
    report = fidelity_report(without(lambda r: not (r.level == "top" and r.seed == 2 and
                                                    r.hash != first)), resamples=50)
    assert len(report.patterns) == 5 and report.levels[-1].seeds == 2
    # A pattern a level has not trained at all is left out, and said so.
    report = fidelity_report(without(lambda r: not (r.hash == first and r.level == "mid")),
                             resamples=50)
    assert len(report.patterns) == 4 and report.left_out == 1
    assert "1 patterns left out" in report.text()


def test_a_level_with_one_seed_so_far_reports_dashes_not_nan(recwarn):
    one = {k: [row[:1] for row in v] for k, v in FIXED.items()}
    report = fidelity_report(_table(one, {"cheap": 1.0, "mid": 4.0, "top": 10.0}),
                             resamples=50)
    assert all(lv.seeds == 1 and math.isnan(lv.seed_std) for lv in report.levels)
    text = report.text()
    assert "nan" not in text and "reliability" not in report.verdict
    fidelity_figure(report)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_the_study_time_is_the_recommended_levels_cost_times_trials_over_workers():
    levels = [_level("a", 0.9, 30.0), _level("ref", math.nan, 600.0)]
    report = FidelityReport(tuple(levels), (), 0.8, "a", "", 0, 0, 10)
    assert study_time(report, 240, 2) == ("use a (a): 30.0 s per trial here, so 240 trials on "
                                          "2 workers take about 1.00 h")
    report = FidelityReport(tuple(levels), (), 0.95, None, "", 0, 0, 10)
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
                                                     {"name": "b", "epochs": 3}]})
    assert cfg.fidelity_levels[0][1] == cfg.search_fidelity
    with pytest.raises(ConfigError, match="two levels train at the same fidelity"):
        tiny_config(tmp_path, fidelity={"levels": [{"name": "a", "batch_size": 32},
                                                   {"name": "b"}]})


def test_calibrate_studies_are_named_after_their_settings(tmp_path):
    cfg = tiny_config(tmp_path, search_space={"name": "offsets", "layers": [8]})
    a, b = (calibration_config(cfg, 4, 2, 2944) for _ in range(2))
    assert a.name == b.name and a.name.startswith("tiny_calibrate_")
    other = tiny_config(tmp_path, search_space={"name": "offsets", "layers": [8]},
                        data={"train_size": 512})
    assert calibration_config(other, 4, 2, 2944).name != a.name
    assert calibration_config(cfg, 5, 2, 2944).name != a.name
    assert calibration_config(cfg, 4, 2, 2944).trials == 0


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


@pytest.mark.slow
def test_calibrate_recommends_a_level_and_the_study_time_at_it(tmp_path):
    raw = tiny_raw(tmp_path, name="cal", trials=20, search_space={"name": "offsets",
                                                                    "layers": [8]},
                   data={"train_size": 64, "val_size": 128})
    config = write_toml(tmp_path / "cal.toml", raw)
    done = run_cli("calibrate", str(config), "--patterns", "3", "--seeds", "2", "-q",
                   "--resamples", "100", "--out", str(tmp_path / "cal"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    url = f"sqlite:///{tmp_path}/tiny.db"
    [name] = [n for n in optuna.get_all_study_names(url) if n.startswith("cal_calibrate_")]
    study = optuna.load_study(study_name=name, storage=url)
    # 3 patterns x 2 seeds at search (64 images), x4 (256) and x16 (1024, of 2944): 18 runs
    assert sum(_counts(study).values()) == 18
    report = json.loads((tmp_path / "cal/fidelity.json").read_text())
    assert [lv["name"] for lv in report["levels"]] == ["search", "images_x4", "images_x16"]
    chosen = report["recommended"] or "images_x16"
    line = done.stdout.strip().splitlines()[-1]
    assert f" {chosen} (" in line and "20 trials on 1 workers take about" in line
    assert not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))

