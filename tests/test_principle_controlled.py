"""The principle with its confound held equal (issue 38): matched pairs and their paired test."""
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from nas.results.principle_controlled import (
    Candidate,
    ControlledConfig,
    bench_candidates,
    matched_pairs,
    paired_result,
)
from search_spaces import Pattern, distance_stats
from search_spaces.spaces import offsets_pattern_block

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "studies" / "results" / "bench_fashion_mnist_v2"


def test_pairs_hold_budget_reads_and_params_equal_are_disjoint_and_span_the_margin():
    rng = np.random.default_rng(0)
    candidates = [Candidate(f"h{i}", 41, int(rng.integers(4, 7)), 0, float(rng.uniform(1.5, 2.2)))
                  for i in range(60)]
    candidates = [Candidate(c.hash, c.connections, c.reads, 1000 + 96 * c.reads,
                            c.mean_distance) for c in candidates]
    pairs = matched_pairs(candidates, 0.1)
    used = [h for p in pairs for h in (p.short.hash, p.long.hash)]
    assert len(used) == len(set(used))  # disjoint
    for p in pairs:
        assert (p.short.connections, p.short.reads, p.short.params) == \
            (p.long.connections, p.long.reads, p.long.params)
        assert p.margin >= 0.1 and p.short.mean_distance < p.long.mean_distance
    # Every group of n gives floor(n/2) pairs before the margin filter.
    counts = np.bincount([c.reads for c in candidates])
    assert len(matched_pairs(candidates, 0.0)) == sum(n // 2 for n in counts)


def test_patterns_of_another_budget_or_params_are_never_paired():
    a = Candidate("a", 41, 5, 100, 1.5)
    assert matched_pairs([a, Candidate("b", 42, 5, 100, 2.0)], 0.0) == ()
    assert matched_pairs([a, Candidate("c", 41, 5, 101, 2.0)], 0.0) == ()
    assert matched_pairs([a, Candidate("d", 41, 6, 100, 2.0)], 0.0) == ()
    assert len(matched_pairs([a, Candidate("e", 41, 5, 100, 2.0)], 0.0)) == 1


def test_the_paired_test_is_the_one_sample_t_and_the_exact_sign_test():
    rng = np.random.default_rng(1)
    candidates = [Candidate(f"h{i}", 41, 5, 100, 1.5 + i / 10) for i in range(20)]
    pairs = matched_pairs(candidates, 0.0)
    seeds = [0, 1, 2]
    acc = {c.hash: {s: float(rng.normal(0.75, 0.01)) for s in seeds} for c in candidates}
    result = paired_result(pairs, acc, seeds)
    d = np.array([np.mean([acc[p.short.hash][s] - acc[p.long.hash][s] for s in seeds])
                  for p in pairs])
    assert np.allclose(result.differences, d)
    low, high = stats.ttest_1samp(d, 0).confidence_interval()
    assert math.isclose(result.mean.low, low) and math.isclose(result.mean.high, high)
    k = int((d > 0).sum())
    assert result.sign.positive == k and result.sign.negative == len(d) - k
    assert math.isclose(result.sign.p_value, stats.binomtest(k, len(d)).pvalue)


def test_a_shared_seed_effect_cancels_within_a_pair():
    candidates = [Candidate("s", 41, 5, 100, 1.5), Candidate("l", 41, 5, 100, 1.8)]
    shift = {0: 0.0, 1: 0.05, 2: -0.04}
    acc = {name: {k: base + v for k, v in shift.items()} for name, base in (("s", 0.76),
                                                                             ("l", 0.75))}
    result = paired_result(matched_pairs(candidates, 0.1), acc, [0, 1, 2])
    assert result.differences == pytest.approx((0.01,))


def test_the_benchmarks_candidates_carry_its_reads_params_and_mean_distance():
    candidates, accuracies = bench_candidates(BENCH)
    assert len(candidates) == 46 and all(len(a) == 12 for a in accuracies.values())
    # In the offsets space params follow the reads of the block input exactly.
    by_reads = {}
    for c in candidates:
        by_reads.setdefault(c.reads, set()).add(c.params)
    assert all(len(p) == 1 for p in by_reads.values())
    pattern = Pattern([offsets_pattern_block(12, [1, 2])])  # node i reads i - 1 and i - 2
    c = Candidate.of(pattern, 0)
    assert c.reads == 2 and c.connections == pattern.connections  # nodes 1 and 2 read node 0
    assert c.mean_distance == distance_stats(pattern).mean


def test_the_published_design_pairs_the_benchmark():
    cfg = ControlledConfig.load(ROOT / "studies" / "principle_controlled" / "fashion_mnist.toml")
    pairs, widest, _ = cfg.design()
    assert len(pairs) == 22 and len(widest) == cfg.higher_pairs
    assert min(p.margin for p in widest) >= max(p.margin for p in pairs if p not in widest)


def test_the_published_readme_numbers_are_the_benchmark_and_the_runs(monkeypatch):
    from nas.results.principle_controlled import (
        higher_accuracies,
        pair_table,
        result_lines,
        summarise,
    )
    from nas.text_tables import markdown_table

    monkeypatch.chdir(ROOT)  # the config's paths are the repository's
    cfg = ControlledConfig.load("studies/principle_controlled/fashion_mnist.toml")
    higher = higher_accuracies(cfg)
    summary = summarise(cfg, higher)
    readme = (cfg.out / "README.md").read_text(encoding="utf-8")
    assert markdown_table(*pair_table(summary)) in readme
    for line in result_lines(summary):
        assert line in readme, line
    assert summary.higher is not None and len(summary.higher.pairs) == cfg.higher_pairs
    # the higher fidelity's seeds are its own; its runs were scored on the test split
    from nas.search.experiment.bench import load_bench
    assert not set(cfg.higher.seeds) & set(load_bench(cfg.bench).cfg.bench.seeds)
    assert all(set(runs) == set(cfg.higher.seeds) for runs in higher.values())


@pytest.mark.slow
def test_the_readmes_regression_on_the_principle_study_is_its_analysis():
    from nas.results.analysis import analyze
    from nas.search.storage.backends import load_study

    study = load_study("principle_fashion_mnist", "sqlite:///" + str(
        ROOT / "studies" / "results" / "principle_fashion_mnist" / "study.db"))
    c = analyze(study, resamples=10).principle.regression.coefficient("mean_distance")
    readme = (ROOT / "studies" / "results" / "principle_controlled_fashion_mnist" /
              "README.md").read_text(encoding="utf-8")
    assert (f"{c.estimate.value:+.4f} per unit of mean\n  distance "
            f"{c.estimate.interval('+.4f')} (p = {c.p_value:.3f})") in readme
