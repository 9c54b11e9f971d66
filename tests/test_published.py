"""The committed principle result: its README table agrees with its analyze JSON, and both come
from the committed config."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from nas.search.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# Template names at publication -> today's names (skipnas 0.2 gave "evenly_spaced" to the
# authors' rule and renamed skipnas' own variants).
RENAMED = {"evenly_spaced": "evenly_spaced_anchored",
           "nearest_half_and_log": "half_nearest_half_log"}
RESULTS = ROOT / "studies" / "results" / "principle_fashion_mnist"


def markdown_rows(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def published():
    return (json.loads((RESULTS / "analyze.json").read_text()),
            (RESULTS / "README.md").read_text())


def test_files_exist_and_come_from_the_config(published):
    result, readme = published
    for name in ("analyze.json", "report.html", "accuracy_vs_mean_distance.png", "README.md"):
        assert (RESULTS / name).is_file(), name
    cfg = load_config(ROOT / "studies" / "principle_fashion_mnist.toml")
    assert result["study"] == cfg.name
    assert result["budget"] == cfg.search_space.build().budget
    assert "skipnas study start studies/principle_fashion_mnist.toml" in readme
    assert re.search(r"wall time", readme, re.I)
    templates = {RENAMED.get(t["template"], t["template"]): t for t in result["templates"]}
    assert set(templates) == set(cfg.baselines.templates)
    assert all(t["seeds"] == len(cfg.baselines.seeds) for t in templates.values())
    assert result["trials_at_budget"] >= 40 + 4 * len(cfg.baselines.seeds)


def test_template_table_matches_json(published):
    result, readme = published
    rows = markdown_rows(readme, "| template |")
    assert len(rows) == len(result["templates"])
    for row, t in zip(rows, result["templates"]):
        assert row[0] == t["template"] and int(row[1]) == t["seeds"]
        mean, std = (float(v) for v in row[2].split("±"))
        assert mean == pytest.approx(t["accuracy_mean"], abs=5e-5)
        assert std == pytest.approx(t["accuracy_std"], abs=5e-5)
        assert int(row[3]) == t["connections"] and int(row[4]) == t["mbd"]
        assert float(row[5]) == pytest.approx(t["mean_distance"], abs=5e-4)


def test_correlation_table_matches_json(published):
    result, readme = published
    rows = markdown_rows(readme, "| distance |")
    assert len(rows) == len(result["correlations"])
    for row, c in zip(rows, result["correlations"]):
        assert (row[0], row[1], row[2]) == (c["against"], c["method"], c["controlled_for"] or "-")
        assert float(row[3]) == pytest.approx(c["r"], abs=5e-4)
        low, high = (float(v) for v in row[4].strip("[]").split(","))
        assert low == pytest.approx(c["ci_low"], abs=5e-4)
        assert high == pytest.approx(c["ci_high"], abs=5e-4)
        assert float(row[5]) == pytest.approx(c["p_value"], abs=5e-5) and int(row[6]) == c["n"]


BENCH = ROOT / "studies" / "results" / "bench_fashion_mnist"
SEARCH = ROOT / "studies" / "results" / "search_fashion_mnist"


@pytest.fixture(scope="module")
def bench():
    from nas.search.experiment.bench import load_bench
    return load_bench(BENCH)


@pytest.mark.parametrize("name", ["bench_fashion_mnist", "bench_fashion_mnist_v2"])
def test_the_benchmark_holds_every_pattern_of_its_config_per_seed(name):
    from nas.search.experiment.bench import bench_rows, load_bench
    from nas.search.storage.backends import load_study

    folder = ROOT / "studies" / "results" / name
    bench = load_bench(folder)
    cfg = load_config(ROOT / "studies" / f"{name}.toml")
    assert (folder / "bench.toml").read_text() == (ROOT / "studies" / f"{name}.toml").read_text()
    assert set(bench.entries) == {p.hash for p in cfg.search_space.build().all_patterns()}
    study = load_study(cfg.name, f"sqlite:///{folder / 'study.db'}")
    stored = {(r.row.hash, r.row.seed): r.row.accuracy for r in bench_rows(study)}
    assert len(stored) == len(bench.entries) * len(cfg.bench.seeds)
    for h, entry in bench.entries.items():
        assert entry.accuracies == tuple(stored[h, s] for s in cfg.bench.seeds)
    assert f"skipnas bench build studies/{name}.toml" in (folder / "README.md").read_text()


def test_the_reliable_benchmark_readme_numbers_are_the_tables():
    """Every number of the v2 table's README (and the superseded note of v1) recomputed from
    the two tables and patterns.csv."""
    import csv
    import itertools

    from nas.search.experiment.bench import load_bench
    from nas.stats import pooled_std, spearman
    from search_spaces.features import SCORES

    folder = ROOT / "studies" / "results" / "bench_fashion_mnist_v2"
    readme = (folder / "README.md").read_text()
    rows = {r[0]: r[1:] for r in markdown_rows(readme, "| |")}
    for name, col in (("bench_fashion_mnist", 0), ("bench_fashion_mnist_v2", 1)):
        bench = load_bench(ROOT / "studies" / "results" / name)
        seeds = np.array([e.accuracies for e in bench.entries.values()])
        means = seeds.mean(axis=1)
        pairs = [spearman(seeds[:, i], seeds[:, j])
                 for i, j in itertools.combinations(range(seeds.shape[1]), 2)]
        rel = bench.reliability()
        assert rows["patterns x seeds"][col] == f"{seeds.shape[0]} x {seeds.shape[1]}"
        assert rows["one seed's std around its pattern's mean"][col] == \
            f"{pooled_std(list(seeds))[0]:.4f}"
        assert rows["std of the pattern means (ddof 1)"][col] == f"{np.std(means, ddof=1):.4f}"
        assert rows["seed-to-seed Spearman (mean over seed pairs)"][col] == \
            f"{np.mean(pairs):.3f}"
        assert rows["**reliability of the means** (Spearman-Brown)"][col] == \
            f"**{rel.reliability:.3f}**"
        ceiling = rows["**noise ceiling** for any score's Spearman with the means"][col]
        assert ceiling.strip("*") == f"{rel.ceiling:.3f}"
    assert rows["split-half Spearman (even vs odd seeds)"][1] == f"{rel.split_half:.3f}"
    assert rel.reliability >= 0.7
    assert f"reliability of the table's means is {rel.reliability:.3f}" in readme
    assert f"means over the even\nand over the odd seeds rank the 46 patterns with Spearman " \
        f"{rel.split_half:.3f}" in readme
    assert f"{means.min():.4f}..{means.max():.4f}" in readme
    assert f"The top 5% is {len(bench.top(0.05))} patterns, the top 1% is " \
        f"{len(bench.top(0.01))}" in readme
    entries = list(bench.entries.values())
    r = spearman(np.array([SCORES["-mean_distance"](e.pattern) for e in entries]), means)
    assert f"Spearman {r:+.3f} of accuracy with\n  `-mean_distance`" in readme
    listed = {r["hash"]: r for r in csv.DictReader((folder / "patterns.csv").open())}
    assert set(listed) == set(bench.entries)
    for h, e in bench.entries.items():
        assert int(listed[h]["seeds"]) == 12
        assert float(listed[h]["mean"]) == pytest.approx(e.accuracy, abs=1e-6)
        assert float(listed[h]["std"]) == pytest.approx(e.std, abs=1e-6)
    old = load_bench(BENCH).reliability()
    assert f"reliability of its means\n> is {old.reliability:.3f}" in \
        (BENCH / "README.md").read_text()


@pytest.fixture(scope="module")
def replayed():
    return json.loads((SEARCH / "replay.json").read_text()), (SEARCH / "README.md").read_text()


def test_the_replay_summary_is_that_of_the_benchmark(bench, replayed):
    result, readme = replayed
    assert result["bench"] == bench.cfg.name and result["patterns"] == len(bench.entries)
    assert result["best_accuracy"] == pytest.approx(bench.ranked()[0].accuracy)
    assert result["top5_count"] == len(bench.top(0.05))
    for s in result["strategies"]:
        assert len(s["top5_trials"]) == result["repeats"] == 30
        median = float(np.median([h if h is not None else np.inf for h in s["top5_trials"]]))
        assert s["top5_median"] == (None if np.isinf(median) else pytest.approx(median))
    from nas.stats import spearman
    from search_spaces.features import SCORES

    entries = list(bench.entries.values())
    r = spearman(np.array([SCORES["-mean_distance"](e.pattern) for e in entries]),
                 np.array([e.accuracy for e in entries]))
    published = next(z for z in result["zero_cost"]
                     if (z["score"], z["method"]) == ("-mean_distance", "spearman"))
    assert published["r"] == pytest.approx(r)
    assert "skipnas bench replay studies/results/bench_fashion_mnist" in readme


def test_the_replay_tables_in_the_readme_match_the_json(replayed):
    result, readme = replayed
    rows = markdown_rows(readme, "| strategy |")
    assert [r[0] for r in rows] == [s["strategy"] for s in result["strategies"]]
    for row, s in zip(rows, result["strategies"]):
        for cell, key in ((row[1], "top5_median"), (row[3], "top1_median")):
            value = s[key]
            assert cell == (f"> {result['trials']}" if value is None else f"{value:g}")
        assert float(row[6]) == pytest.approx(s["regret_mean"][-1], abs=5e-5)
    rows = markdown_rows(readme, "| score")
    assert len(rows) == len(result["zero_cost"])
    for row, z in zip(rows, result["zero_cost"]):
        assert (row[0], row[1]) == (z["score"], z["method"])
        assert float(row[2]) == pytest.approx(z["r"], abs=5e-4)


SEARCH_V2 = ROOT / "studies" / "results" / "search_fashion_mnist_v2"


def test_the_v2_replay_is_that_of_the_reliable_table_and_its_readme():
    """The v2 replay's summary against its table, the README's tables rebuilt from the JSON,
    and the verdict's target arithmetic."""
    from nas.results.bench_report import ReplaySummary, strategy_table, zero_cost_table
    from nas.search.experiment.bench import load_bench
    from nas.search.strategy.samplers import STRATEGIES

    bench = load_bench(ROOT / "studies" / "results" / "bench_fashion_mnist_v2")
    result = json.loads((SEARCH_V2 / "replay.json").read_text())
    readme = (SEARCH_V2 / "README.md").read_text()
    assert result["bench"] == bench.cfg.name and result["patterns"] == len(bench.entries) == 46
    assert result["best_accuracy"] == pytest.approx(bench.ranked()[0].accuracy)
    assert (result["top5_count"], result["top1_count"]) == (3, 1)
    assert result["seed_spread"] == pytest.approx(np.mean([e.std for e in bench.entries.values()]))
    assert [s["strategy"] for s in result["strategies"]] == list(STRATEGIES)
    assert (result["repeats"], result["trials"]) == (30, 40)
    for s in result["strategies"]:
        median = float(np.median([h if h is not None else np.inf for h in s["top5_trials"]]))
        assert s["top5_median"] == (None if np.isinf(median) else pytest.approx(median))
    summary = ReplaySummary.from_json(result)
    assert json.dumps(summary.to_json()) == json.dumps(result)  # the JSON the summary writes
    for table in (strategy_table(summary), zero_cost_table(summary.zero_cost)):
        headers, rows = table
        assert markdown_rows(readme, "| " + headers[0] + " |") == rows
    by = {s["strategy"]: s["regret_mean"][9] for s in result["strategies"]}
    bar = min(by["uniform"] / 3, by["tpe"] / 2)
    assert by["prior"] <= bar and by["screen"] > bar
    assert f"Uniform's is {by['uniform']:.4f} and TPE's\n  {by['tpe']:.4f}, so the bar is " \
        f"{bar:.4f}" in readme
    assert f"{by['prior'] / by['uniform']:.2f} of uniform's and\n  " \
        f"{by['prior'] / by['tpe']:.2f} of TPE's" in readme
    assert "skipnas bench replay studies/results/bench_fashion_mnist_v2" in readme


DEPTH = ROOT / "studies" / "results" / "principle_depth"
DEPTH_STUDIES = ("principle_depth_L8", "principle_depth_L16", "principle_depth_L32",
                 "principle_depth_L64", "principle_styles_3x12")


@pytest.fixture(scope="module")
def depth():
    results = {name: json.loads((DEPTH / name / "analyze.json").read_text())
               for name in DEPTH_STUDIES}
    return results, json.loads((DEPTH / "depth.json").read_text()), \
        (DEPTH / "README.md").read_text()


@pytest.mark.slow
def test_each_depth_study_is_its_config_and_its_storage(depth):
    from nas.results.analysis import analyze
    from nas.search.slots import baseline_slots
    from nas.search.storage.backends import load_study

    results, _, readme = depth
    for name, result in results.items():
        for file in ("analyze.json", "report.html", "accuracy_vs_mean_distance.png"):
            assert (DEPTH / name / file).is_file(), (name, file)
        cfg = load_config(ROOT / "studies" / f"{name}.toml")
        assert f"skipnas study start studies/{name}.toml" in readme
        assert result["study"] == name and result["layers"] == list(cfg.search_space.layers)
        assert result["budget"] == cfg.search_space.build().budget
        # Every slot ran: the templates in each style, budget and block output, per seed.
        slots = baseline_slots(cfg)
        assert sum(t["seeds"] for t in result["templates"]) == len(slots)
        assert len(result["templates"]) == len(slots) // len(cfg.baselines.seeds)
        assert result["trials_total"] >= cfg.trials
    # The committed storage gives back the committed analysis.
    name = "principle_depth_L16"
    again = analyze(load_study(name, f"sqlite:///{DEPTH / 'study.db'}")).to_json()
    assert {k: again[k] for k in results[name]} == results[name]  # later versions add fields


def assert_same(got, want, where="summary"):
    """Equal, floats to 1e-12: percentiles of the same draws can differ in the last bit from one
    numpy build to another (seen: 0.039540333333333316 here, ...32 there)."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for k in want:
            assert_same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), where
    else:
        assert got == want, where


def test_the_depth_summary_is_that_of_the_analyses(depth):
    from nas.results.analysis import PrincipleTest
    from nas.results.depth import DepthSummary, depth_summary, depth_table
    from nas.text_tables import markdown_table

    results, summary, readme = depth
    one_block = [PrincipleTest.from_json(r) for r in results.values() if len(r["layers"]) == 1]
    assert_same(depth_summary(one_block, resamples=summary["resamples"]).to_json(), summary)
    assert [d["layers"] for d in summary["depths"]] == [8, 16, 32, 64]
    assert markdown_table(*depth_table(DepthSummary.from_json(summary))) in readme
    assert (DEPTH / "depth.png").is_file()


def test_the_readme_template_tables_are_the_analyses(depth):
    from nas.results.analysis import PrincipleTest, template_table
    from nas.text_tables import markdown_table

    results, _, readme = depth
    for result in results.values():
        table = template_table(PrincipleTest.from_json(result))
        assert markdown_table(*table) in readme, result["study"]


CONFIRM = ROOT / "studies" / "results" / "confirm_fashion_mnist"


@pytest.fixture(scope="module")
def confirmed():
    from nas.search.experiment.evidence import Evidence

    result = json.loads((CONFIRM / "analyze.json").read_text())
    return result, Evidence.from_json(result["evidence"]), (CONFIRM / "README.md").read_text()


def test_the_confirm_result_is_its_config_and_its_storage(confirmed):
    from nas.search.experiment.confirm import confirm_slots
    from nas.search.experiment.evidence import SEARCH_KINDS
    from nas.search.experiment.study import study_evidence
    from nas.search.record import SlotKind, TrialRecord
    from nas.search.storage.backends import load_study

    result, ev, readme = confirmed
    cfg = load_config(ROOT / "studies" / "confirm_fashion_mnist.toml")
    for file in ("analyze.json", "report.html", "confirmed.png", "README.md"):
        assert (CONFIRM / file).is_file(), file
    for command in ("skipnas study start studies/confirm_fashion_mnist.toml",
                    "skipnas confirm studies/confirm_fashion_mnist.toml",
                    "python scripts/publish_confirm.py"):
        assert command in readme
    assert re.search(r"wall time", readme, re.I)
    study = load_study(cfg.name, f"sqlite:///{CONFIRM / 'study.db'}")
    # The committed storage gives back the evidence.
    again = study_evidence(study)
    assert again.best is not None and again.best.role == "search"
    assert again == ev
    kinds = [TrialRecord.from_trial(t).kind for t in study.get_trials(deepcopy=False)
             if t.state.name == "COMPLETE"]
    assert kinds.count(SlotKind.SEARCH) == cfg.trials
    assert kinds.count(SlotKind.NOISE) == cfg.noise.repeats
    assert sum(k in SEARCH_KINDS for k in kinds) == cfg.trials + cfg.noise.repeats + 4
    # Every confirm slot ran once, at the confirm fidelity, with every seed.
    assert kinds.count(SlotKind.CONFIRM) == len(confirm_slots(study, cfg))
    assert all(c.mean.n == cfg.confirm.seeds for c in ev.confirmed)
    assert ev.confirm_fidelity == cfg.confirm_fidelity.to_dict()
    assert sum(c.repeat_of is not None for c in ev.confirmed) == cfg.confirm.top


def test_the_confirm_readme_numbers_are_the_evidence(confirmed):
    from nas.results.analysis import confirmed_table, evidence_lines
    from nas.stats import spearman
    from nas.text_tables import markdown_table

    _, ev, readme = confirmed
    assert markdown_table(*confirmed_table(ev)) in readme
    for line in evidence_lines(ev):
        assert line in readme, line
    searched = [c for c in ev.confirmed if c.repeat_of is not None]
    brief5 = {c.hash for c in sorted(searched, key=lambda c: -c.brief)[:5]}
    confirmed5 = {c.hash for c in sorted(searched, key=lambda c: -c.mean.mean.value)[:5]}
    assert f"{len(brief5 & confirmed5)} of the brief top 5" in readme
    rho = spearman(np.array([c.brief for c in searched]),
                   np.array([c.mean.mean.value for c in searched]))
    assert f"Spearman {rho:+.2f}" in readme
    winner = ev.winner
    assert f"confirmed best: {winner.name}" in readme
    # Issue 38's re-analysis: seeds as blocks, the winner beside every template, the answer.
    from nas.search.experiment.evidence import answer
    assert answer(ev).sentence in readme
    sel = ev.selection
    assert f"F test p = {sel.omnibus_p:.3f}" in readme
    assert f"pooled seed std {sel.residual_std:.4f} ({sel.df} df)" in readme
    for v in sel.versus:
        assert (f"{sel.searched} vs {v.template}: {v.diff.diff.value:+.4f} "
                f"{v.diff.diff.interval('+.4f')}, Holm {v.holm.interval('+.4f')}") in readme
    adjusted = winner.vs_log_adjusted.diff
    assert f"Holm over 11: {adjusted.interval('+.4f')}" in readme
    assert f"{sel.naive_lead:+.4f} naive" in readme
    assert f"{sel.cross_fit_lead:+.4f} picked" in readme


PROXIES = ROOT / "studies" / "results" / "proxies_fashion_mnist"


@pytest.mark.parametrize("table,n", [("bench_v1", 183), ("bench_v2", 46)])
def test_the_proxy_table_in_the_readme_is_the_json(table, n):
    result = json.loads((PROXIES / table / "proxies.json").read_text())
    section = (PROXIES / "README.md").read_text().split(f"## {table}:")[1]
    rows = markdown_rows(section, "| score")
    assert [r[0] for r in rows] == [s["score"] for s in result["scores"]]
    for row, s in zip(rows, result["scores"]):
        rho, tau = s["spearman"], s["kendall"]
        assert row[2] == f"{rho['r']:+.3f} [{rho['ci_low']:+.3f}, {rho['ci_high']:+.3f}]"
        assert row[4] == f"{tau['r']:+.3f} [{tau['ci_low']:+.3f}, {tau['ci_high']:+.3f}]"
        assert (row[3], row[5]) == (f"{rho['p_value']:.4f}", f"{tau['p_value']:.4f}")
        assert int(row[6]) == s["n"] == n and row[7] == f"{s['seconds']:.4f}"


def test_the_v2_proxy_verdict_is_the_tables():
    """The v2 verdict's paired difference, partial correlation and ceiling, recomputed."""
    from scipy.stats import rankdata

    from nas.search.experiment.bench import load_bench
    from nas.stats import correlate, pearson_rows, spearman
    from search_spaces.features import SCORES

    text = (PROXIES / "README.md").read_text().split("## bench_v2:")[1]
    for name, at in (("bench_fashion_mnist_v2", "+0.197 [+0.040, +0.397]"),
                     ("bench_fashion_mnist", "-0.022 [-0.135, +0.089]")):
        bench = load_bench(ROOT / "studies" / "results" / name)
        entries = list(bench.entries.values())
        acc = np.array([e.accuracy for e in entries])
        distance = np.array([SCORES["-mean_distance"](e.pattern) for e in entries])
        reads = -np.array([SCORES["reads_of_node0"](e.pattern) for e in entries])
        idx = np.random.default_rng(0).integers(0, len(acc), (2000, len(acc)))

        truth = rankdata(acc[idx], axis=1)
        diff = pearson_rows(rankdata(reads[idx], axis=1), truth) - \
            pearson_rows(rankdata(distance[idx], axis=1), truth)
        low, high = np.nanpercentile(diff, [2.5, 97.5])
        point = spearman(reads, acc) - spearman(distance, acc)
        assert f"{point:+.3f} [{low:+.3f}, {high:+.3f}]" == at
        assert at in text
    bench = load_bench(ROOT / "studies" / "results" / "bench_fashion_mnist_v2")
    entries = list(bench.entries.values())
    acc = np.array([e.accuracy for e in entries])
    r = correlate(np.array([SCORES["-mean_distance"](e.pattern) for e in entries]),
                  acc, "spearman",
                  np.array([SCORES["reads_of_node0"](e.pattern) for e in entries])).r
    assert f"`reads_of_node0` is {r.text('+.3f')}" in text
    rel = bench.reliability()
    assert f"Spearman {rel.split_half:.3f}; the reliability of the 12-seed means is " \
        f"{rel.reliability:.3f}" in text
    assert f"sqrt({rel.reliability:.3f}) = {rel.ceiling:.3f}" in text


@pytest.mark.parametrize("table,name", [("bench_v1", "bench_fashion_mnist"),
                                        ("bench_v2", "bench_fashion_mnist_v2")])
def test_the_proxy_json_is_its_benchmark_and_its_correlations_are_its_scores(table, name):
    """Per pattern: the table's mean accuracy and skipnas' scores; per row: the Spearman and
    Kendall of its scores; the combined row: the best candidate's z-score sum; the ceiling:
    the table's."""
    from nas.results.proxies_report import COMBINE_CANDIDATES, COMBINED_FROM, combined_score
    from nas.search.experiment.bench import load_bench
    from nas.stats import kendall, spearman
    from search_spaces.features import SCORES

    bench = load_bench(ROOT / "studies" / "results" / name)
    result = json.loads((PROXIES / table / "proxies.json").read_text())
    patterns = result["per_pattern"]
    assert [p["hash"] for p in patterns] == list(bench.entries)
    for p, entry in zip(patterns, bench.entries.values()):
        assert p["accuracy"] == pytest.approx(entry.accuracy)
        for score, of in SCORES.items():
            assert p["scores"][score] == pytest.approx(of(entry.pattern))
    accuracy = np.array([p["accuracy"] for p in patterns])
    rows = {s["score"]: s for s in result["scores"]}
    for score, row in rows.items():
        values = np.array([p["scores"][score] for p in patterns], dtype=float)
        ok = np.isfinite(values)
        assert row["n"] == ok.sum()
        assert row["spearman"]["r"] == pytest.approx(spearman(values[ok], accuracy[ok]))
        assert row["kendall"]["r"] == pytest.approx(kendall(values[ok], accuracy[ok]))
    best = max(COMBINE_CANDIDATES, key=lambda c: rows[c]["spearman"]["r"])
    assert result["combined_from"] == best
    combined = combined_score(np.array([p["scores"]["-mean_distance"] for p in patterns]),
                              np.array([p["scores"][best] for p in patterns]), best)
    assert [p["scores"][COMBINED_FROM + best] for p in patterns] == pytest.approx(combined)
    rel = bench.reliability()
    assert result["reliability"] == pytest.approx(
        {"seeds": rel.seeds, "split_half": rel.split_half, "reliability": rel.reliability,
         "ceiling": rel.ceiling})
    assert f"noise ceiling for any score's Spearman with them: {rel.ceiling:.3f}" in \
        (PROXIES / table / "proxies.md").read_text()


def test_the_v1_proxy_readme_numbers_are_its_benchmarks():
    from nas.search.experiment.bench import load_bench
    from nas.stats import correlate, spearman, spearman_brown

    bench = load_bench(ROOT / "studies" / "results" / "bench_fashion_mnist")
    result = json.loads((PROXIES / "bench_v1" / "proxies.json").read_text())
    by_hash = {p["hash"]: p for p in result["per_pattern"]}
    snip = np.array([by_hash[h]["scores"]["snip"] for h in bench.entries])
    accuracy = np.array([e.accuracy for e in bench.entries.values()])
    r = correlate(snip, accuracy, "spearman", resamples=10).r.value
    assert f"snip (+{r:.3f})" in (PROXIES / "README.md").read_text()
    seeds = np.array([e.accuracies for e in bench.entries.values()])
    r01 = spearman(seeds[:, 0], seeds[:, 1])
    ceiling = spearman_brown(r01, 2)
    text = (PROXIES / "README.md").read_text()
    assert f"Spearman {r01:.3f}" in text and f"is {ceiling:.3f}" in text
    assert f"sqrt({ceiling:.3f}) = {np.sqrt(ceiling):.3f}" in text


FIDELITY = ROOT / "studies" / "results" / "fidelity_fashion_mnist"


@pytest.mark.slow
def test_fidelity_readme_numbers_match_the_study():
    """The first fidelity study, of the design issue 38 replaced (every level reused the
    reference's seeds and validation images; the committed config is the new design, and the
    code refuses the old one): the committed JSON holds the study's accuracies, its point
    statistics are those of these accuracies, it reads as a report marked inflated, and the
    README quotes it."""
    import itertools

    import optuna
    from optuna.trial import TrialState

    from nas.results.analysis import FULL_TRAINING_ACCURACY
    from nas.results.fidelity_summary import FidelityReport
    from nas.search.config import Fidelity
    from nas.search.record import TrialRecord
    from nas.stats import spearman, spearman_brown

    stored = json.loads((FIDELITY / "fidelity.json").read_text())
    url = f"sqlite:///{FIDELITY / 'study.db'}"
    study = optuna.load_study(study_name="fidelity_fashion_mnist", storage=url)
    runs: dict[tuple[str, str], dict[int, float]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = TrialRecord.from_trial(t)
        level = Fidelity.from_dict(r.fidelity).describe()
        runs.setdefault((r.hash, level), {})[r.seed] = t.values[0]
    by_description = {lv["fidelity"]: lv["name"] for lv in stored["levels"]}
    for p in stored["patterns"]:
        for description, name in by_description.items():
            seeds = runs[p["hash"], description]
            assert p["accuracies"][name] == [seeds[s] for s in sorted(seeds)]
    acc = {lv["name"]: np.array([p["accuracies"][lv["name"]] for p in stored["patterns"]])
           for lv in stored["levels"]}
    top = stored["levels"][-1]["name"]
    for lv in stored["levels"]:
        a = acc[lv["name"]]
        r = np.mean([spearman(a[:, i], a[:, j])
                     for i, j in itertools.combinations(range(a.shape[1]), 2)])
        assert (lv["seed_spearman"], lv["reliability"]) == pytest.approx(
            (r, spearman_brown(r, a.shape[1])))
        if lv["name"] != top:
            assert lv["vs_reference"]["value"] == pytest.approx(
                spearman(a.mean(axis=1), acc[top].mean(axis=1)))
    report = FidelityReport.from_json(stored)
    assert not report.independent and "are inflated" in report.text()
    text = (FIDELITY / "README.md").read_text()
    # Issue 38: each level against the reference's seed 2, which no other level trained, and
    # the attenuation cap sqrt(reliability of the level x reliability of the reference).
    top_rel = stored["levels"][-1]["reliability"]
    for lv in stored["levels"][:-1]:
        unshared = spearman(acc[lv["name"]].mean(axis=1), acc[top][:, 2])
        assert (f"> | {lv['name']} | {lv['vs_reference']['value']:+.2f} | {unshared:+.2f} | "
                f"{np.sqrt(lv['reliability'] * top_rel):.2f} |") in text
    rows = markdown_rows(text, "| level")
    levels = stored["levels"]
    assert [r[0] for r in rows] == [lv["name"] for lv in levels] and len(stored["patterns"]) == 24
    for row, lv in zip(rows, levels):
        assert row[2:10] == [str(lv["seeds"]), f"{lv['seconds']:.1f}",
                             f"{lv['seconds'] / levels[-1]['seconds']:.2f}",
                             f"{lv['mean_accuracy']:.4f}", f"{lv['seed_std']:.4f}",
                             f"{lv['spread']:.4f}", f"{lv['seed_spearman']:+.2f}",
                             f"{lv['reliability']:+.2f}"]
        if lv is not levels[-1]:
            for cell, key in ((row[10], "vs_reference"), (row[11], "kendall_vs_reference")):
                c = lv[key]
                assert cell == f"{c['value']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]"
    bench, train16k, full = levels[0], levels[2], levels[-1]
    assert stored["recommended"] == "train16k"
    assert f"Spearman +{bench['vs_reference']['value']:.2f}" in text
    assert f"sqrt({full['reliability']:.2f}) = {np.sqrt(full['reliability']):.2f}" in text
    assert f"at {train16k['seconds'] / bench['seconds']:.1f}x the" in text
    assert round(full["mean_accuracy"], 3) == FULL_TRAINING_ACCURACY  # the report's caveat
    # The principle at each level, and where the old benchmark's ten best land under full.
    patterns = stored["patterns"]
    distance = [p["mean_distance"] for p in patterns]
    rhos = [spearman(np.array(distance), np.array([np.mean(p["accuracies"][lv["name"]])
                                                   for p in patterns])) for lv in levels]
    assert (f"distance -{-rhos[0]:.2f} (bench), -{-rhos[1]:.2f}, -{-rhos[2]:.2f} and "
            f"-{-rhos[3]:.2f} (full)") in text
    full_means = np.array([np.mean(p["accuracies"]["full"]) for p in patterns])
    rank = {p["label"]: int(r) + 1 for p, r in zip(patterns, (-full_means).argsort().argsort())}
    ranks = [rank[f"bench #{k}"] for k in range(1, 11)]
    assert "ranks " + ", ".join(map(str, ranks)) + " of 24" in text
    assert f"{sum(r <= 10 for r in ranks)} of them in its top 10" in text
