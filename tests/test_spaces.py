"""Search spaces: every sample valid, exactly on budget, using only trial.suggest_*."""
import itertools

import numpy as np
import optuna
import pytest

from search_spaces import STYLES, PatternError, template_pattern
from search_spaces.spaces import (
    SEARCH_SPACES,
    decode_subset,
    free_block,
    make_space,
    offsets_block,
    split_budget,
)
from search_spaces.templates import budgeted_block

optuna.logging.set_verbosity(optuna.logging.WARNING)
LAYERS = [[6], [13], [24], [5, 5, 5], [9, 4]]


@pytest.mark.parametrize("name", list(SEARCH_SPACES))
@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.slow
def test_200_random_trials_valid_and_on_budget(name, layers, style):
    space = make_space(name, layers, style=style)
    assert space.budget == template_pattern("log", layers, style=style).connections
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    patterns = []

    def objective(trial):
        p = space.suggest(trial)
        patterns.append(p)
        return 0.0

    study.optimize(objective, n_trials=200)
    assert len(patterns) == 200
    for p in patterns:
        assert p.connections == space.budget and p.style == style
        assert p.stages == tuple(layers)
        if style == "per_block" or name == "free":  # else met by the network as a whole
            assert [b.connections for b in p.blocks] == space.block_budgets


@pytest.mark.parametrize("style", ["v1", "v2"])
def test_offsets_counts_add_up_per_offset(style):
    """The v1/v2 offsets decoder relies on each offset adding the same edges whatever else is
    in the set; check it over random sets."""
    space = make_space("offsets", [5, 6, 4], style=style)
    rng = np.random.default_rng(0)
    base = space.network({1}).connections
    for _ in range(50):
        chosen = [o for o in space.offsets if rng.random() < 0.5]
        total = space.network({1, *chosen}).connections
        assert total == base + sum(w for o, w in zip(space.offsets, space.weights)
                                   if o in chosen)


def test_spaces_refuse_a_budget_their_style_cannot_meet():
    with pytest.raises(PatternError, match="impossible for layers \\[3, 3\\] in v2"):
        make_space("free", [3, 3], budget=5, style="v2")
    with pytest.raises(PatternError, match="no offset set has exactly"):
        make_space("offsets", [6], budget=9, style="v1")  # base 8, smallest offset adds 2
    with pytest.raises(PatternError, match="unknown style"):
        make_space("free", [6], style="v3")


@pytest.mark.parametrize("name", ["offsets", "free"])
def test_other_budgets_are_met_exactly(name):
    top = 104 if name == "offsets" else 105  # offsets stop at L: node L+1 never reads node 0
    for budget in (14, 40, 60, 90, top):
        space = make_space(name, [13], budget=budget)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=budget))
        study.optimize(lambda t, space=space, budget=budget:
                       float(space.suggest(t).connections == budget), n_trials=30)
        assert all(t.value == 1.0 for t in study.trials)


def test_budgeted_k_templates_every_budget():
    for L in (1, 4, 9):
        for budget in range(L + 1, (L + 1) * (L + 2) // 2 + 1):
            for name in ("nearest", "evenly_spaced", "evenly_spaced_anchored",
                         "half_nearest_half_log"):
                assert budgeted_block(name, L, budget).connections == budget


def test_templates_space_candidates_and_budget_errors():
    space = make_space("templates", [24])
    assert set(space.templates) == {"nearest", "evenly_spaced", "evenly_spaced_anchored", "log",
                                    "half_nearest_half_log"}
    assert space.pattern("log") == template_pattern("log", 24)
    chain_budget = make_space("templates", [8], budget=9)
    assert "chain" in chain_budget.templates and "log" not in chain_budget.templates
    with pytest.raises(PatternError, match="budget 5 impossible"):
        make_space("free", [8], budget=5)
    with pytest.raises(PatternError, match="unknown search space"):
        make_space("fre", [8])


def test_offsets_decode_reaches_named_points():
    L = 24
    log_offsets = {1, 2, 4, 8, 16}
    keys = {o: (0.9 if o in log_offsets else 0.1) for o in range(2, L + 1)}
    assert offsets_block(L, template_pattern("log", L).connections, keys) == \
        template_pattern("log", L).blocks[0]
    nearest = template_pattern("nearest", L, 4)
    keys = {o: (0.9 if o <= 4 else 0.1) for o in range(2, L + 1)}
    assert offsets_block(L, nearest.connections, keys) == nearest.blocks[0]


def test_offsets_impossible_budget_is_explained():
    L = 6  # offsets 2..6 add 6,5,4,3,2 edges; 1 extra edge is unreachable
    with pytest.raises(PatternError, match="no offset set has exactly 8"):
        make_space("offsets", [L], budget=L + 2)


def test_decode_subset_exhaustive_small():
    weights = [5, 4, 3, 2]
    for target in range(0, 15):
        reachable = any(sum(c) == target for r in range(5)
                        for c in itertools.combinations(weights, r))
        for keys in itertools.product([0.1, 0.9], repeat=4):
            if not reachable:
                with pytest.raises(PatternError):
                    decode_subset(weights, keys, target)
                continue
            picked = decode_subset(weights, keys, target)
            assert sum(weights[t] for t in picked) == target


def test_free_block_follows_keys_when_budget_allows():
    """With the chain's keys highest, the minimum budget decodes to the chain; a higher budget
    adds the next-highest keyed edges."""
    L = 6
    chain = {(i - 1, i) for i in range(1, L + 2)}
    extra = (0, 7)
    key = lambda e: 1.0 if e in chain else (0.8 if e == extra else 0.1)  # noqa: E731
    assert free_block(L, L + 1, key) == template_pattern("chain", L).blocks[0]
    assert set(free_block(L, L + 2, key).edges()) == chain | {extra}
    # Adversarial keys (all mass on edges from node 0) still decode validly at every budget.
    bad = lambda e: 1.0 if e[0] == 0 else 0.0  # noqa: E731
    for budget in range(L + 1, (L + 1) * (L + 2) // 2 + 1):
        assert free_block(L, budget, bad).connections == budget


def test_split_budget_every_feasible_total():
    layers = [1, 6, 3]
    weights = [template_pattern("log", L).connections for L in layers]
    ranges = [(L + 1, (L + 1) * (L + 2) // 2) for L in layers]
    assert split_budget(sum(weights), weights, ranges) == weights
    low, high = sum(L + 1 for L in layers), sum((L + 1) * (L + 2) // 2 for L in layers)
    for budget in range(low, high + 1):
        shares = split_budget(budget, weights, ranges)
        assert sum(shares) == budget
        assert all(L + 1 <= s <= (L + 1) * (L + 2) // 2 for s, L in zip(shares, layers))
