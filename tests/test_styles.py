"""Templates and network styles against the authors' released code and closed forms: the rules
(ported literally below), connection counts per style, distances, budgets, validation."""
import math

import numpy as np
import pytest

from search_spaces import (
    BLOCK_OUTPUTS,
    STYLES,
    TEMPLATES,
    Block,
    Pattern,
    PatternError,
    Style,
    budgeted_pattern,
    distance_matrix,
    distance_stats,
    make_space,
    template_pattern,
    template_table,
    with_block_output,
)
from search_spaces.distances import UNREACHABLE

# --- the authors' code (AnytimeLogDenseNetV1/V2, AnytimeLogLogDenseNet), ported literally ----
# Layer ``ui`` (0-based) reads pls[x], x_0 being the stem; log_dense_base 2, coef 1, no early
# connections, bottleneck_width 4.0: their defaults.

METHODS = {"log": 0, "nearest": 2, "evenly_spaced": 3, "dense": 4, "nearest_half": 6,
           "every_other": 7, "nearest_half_hubs": 8}


def authors_select(method: int, ui: int, total_units: int) -> list[int]:
    if method == 0:
        df, exponential_diffs = 1, [0]
        while True:
            df = df * 2
            if df > total_units * 1:
                break
            int_df = int((df - 1) / 1)
            if int_df != exponential_diffs[-1]:
                exponential_diffs.append(int_df)
        diffs = exponential_diffs
    elif method == 2:
        diffs = list(range(int(np.log2(total_units + 1)) + 1))
    elif method == 3:
        n_select = int((np.log2(total_units + 1) + 1) * 1)
        delta = (ui + 1.0) / n_select
        df, diffs = 0, []
        for _ in range(n_select):
            int_df = int(df)
            if len(diffs) == 0 or int_df != diffs[-1]:
                diffs.append(int_df)
            df += delta
    elif method == 4:
        diffs = list(range(ui + 1))
    elif method == 6:
        diffs = list(range(ui // 2 + 1))
    elif method == 7:
        diffs = list(range(0, ui + 1, 2))
    else:  # 8
        n_select = ui // 2 + 1
        diffs = list(range(n_select))
        pos = ui - n_select + 1
        while pos > 0:
            pos = (pos - 1) // 2
            diffs.append(ui - pos)
    return sorted({x for x in (ui - df for df in diffs if ui - df >= 0) if 0 <= x <= ui})


def authors_loglog(total_units: int, cumsum_blocks: list[int]) -> list[list[int]]:
    l_adj = [[i - 1] for i in range(total_units + 1)]

    def loglog_connect(a, b, force_connect_locs=()):
        if b - a <= 2:
            return
        step_len = int(np.sqrt(b - a))
        key_indices = list(range(a + (b - 1 - a) % step_len, b, step_len))
        for fc_key in force_connect_locs:
            if fc_key not in key_indices:
                key_indices.append(fc_key)
        key_indices = sorted(key_indices)
        if key_indices[-1] != b - 1:
            key_indices.append(b - 1)
        if key_indices[0] != a:
            key_indices.insert(0, a)
        for ki, key in enumerate(key_indices):
            if ki == 0:
                continue
            for prev_key in key_indices[:ki]:
                if prev_key not in l_adj[key]:
                    l_adj[key].append(prev_key)
            prev_key = key_indices[ki - 1]
            for li in range(prev_key + 1, key):
                if prev_key not in l_adj[li]:
                    l_adj[li].append(prev_key)
            loglog_connect(prev_key, key + 1)

    loglog_connect(0, total_units + 1, cumsum_blocks)
    for i in range(total_units):
        l_adj[i + 1] = [x for x in np.unique(l_adj[i + 1]) if 0 <= x <= i]
        if len(l_adj[i + 1]) < 4.0:
            for offset in [1, 2, 4, 8, 16, 32]:
                idx = i + 1 - offset
                if idx < 0:
                    break
                if idx not in l_adj[i + 1]:
                    l_adj[i + 1].append(idx)
                    if len(l_adj[i + 1]) >= 4.0:
                        break
    return [sorted(int(x) for x in row) for row in l_adj[1:]]


def authors_v2_filter(ui: int, x: int, cumsum_blocks: list[int]) -> bool:
    import bisect
    if ui == 0 or x == 0:
        return False
    return bisect.bisect_right(cumsum_blocks, ui) == bisect.bisect_right(cumsum_blocks, x - 1)


SIZES = [1, 2, 3, 5, 7, 12, 13, 31, 40]
STAGES = [[1, 1], [3, 4], [5, 6, 7], [12, 12, 12], [2, 9, 1]]


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("n", SIZES)
def test_rules_are_the_authors_v1(name, n):
    """Over the global layers (v1), each layer reads what the authors' code selects."""
    pattern = template_pattern(name, [n], style="v1")
    rows = pattern.blocks[0].inputs
    for ui in range(n):
        assert list(rows[ui]) == authors_select(METHODS[name], ui, n), (name, ui)


@pytest.mark.parametrize("n", SIZES + [50, 64])
def test_loglog_is_the_authors(n):
    pattern = template_pattern("loglog", [n], style="v1")
    assert [list(r) for r in pattern.blocks[0].inputs[:n]] == authors_loglog(n, [n])


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("layers", STAGES)
def test_v2_is_the_authors_filter_plus_context(name, layers):
    """v2: the authors' selection over global layers, their special_filter (own block only, no
    x_0), and the context; stages of v1 do not change its rows."""
    n, cumsum = sum(layers), list(np.cumsum(layers))
    v1_rows = template_pattern(name, layers, style="v1").blocks[0].inputs
    v2 = template_pattern(name, layers, style="v2")
    offset = 0
    for block, L in zip(v2.blocks, layers):
        for local in range(1, L + 1):
            ui = offset + local - 1
            selected = authors_select(METHODS[name], ui, n)
            assert list(v1_rows[ui]) == selected
            kept = [x for x in selected if authors_v2_filter(ui, x, cumsum)]
            assert list(block.reads(local)) == [0] + [x - offset for x in kept]
        offset += L


def node_count(name: str, i: int, k: int) -> int:
    """Inputs of node i under each rule (closed forms)."""
    return {"dense": i, "chain": 1, "log": i.bit_length(), "nearest": min(i, k),
            "evenly_spaced": min(i, k), "evenly_spaced_anchored": min(i, k),
            "half_nearest_half_log": min(i, k), "nearest_half": (i + 1) // 2,
            "every_other": (i + 1) // 2,
            "nearest_half_hubs": (i + 1) // 2 + (i // 2 + 1).bit_length() - 1}[name]


CLOSED = [n for n in TEMPLATES if n != "loglog"]


@pytest.mark.parametrize("name", CLOSED)
@pytest.mark.parametrize("layers", STAGES + [[7], [24]])
def test_connection_counts_closed_forms(name, layers):
    k_block = [int(L + 1).bit_length() for L in layers]
    n = sum(layers)
    k = int(n + 1).bit_length()
    per_block = sum(node_count(name, i, kb) for L, kb in zip(layers, k_block)
                    for i in range(1, L + 2))
    assert template_pattern(name, layers).connections == per_block
    v1 = sum(node_count(name, i, k) for i in range(1, n + 1)) + node_count(name, n, k) + 1
    assert template_pattern(name, layers, style="v1").connections == v1


@pytest.mark.parametrize("layers", STAGES)
def test_v2_closed_forms(layers):
    """Each layer reads the context plus its in-block sources; contexts read whole blocks; the
    head reads the last layer's inputs and the last layer."""
    n = sum(layers)
    k = int(n + 1).bit_length()
    inside = {"dense": lambda lo: lo - 1, "chain": lambda lo: min(lo - 1, 1),
              "log": lambda lo: (lo - 1).bit_length(), "nearest": lambda lo: min(lo - 1, k)}
    for name, count in inside.items():
        total = sum(sum(1 + count(lo) for lo in range(1, L + 1)) for L in layers)
        total += sum(L + 1 for L in layers[:-1]) + 1 + count(layers[-1]) + 1
        assert template_pattern(name, layers, style="v2").connections == total, name


@pytest.mark.parametrize("layers", STAGES)
def test_log_v1_distances_are_popcounts_across_blocks(layers):
    p = template_pattern("log", layers, style="v1")
    n = sum(layers)
    d = distance_matrix(p)
    for j in range(n + 1):
        for i in range(j + 1, n + 1):
            assert d[j, i] == bin(i - j).count("1")
    assert distance_stats(p).mbd == max(max(bin(x).count("1") for x in range(1, n + 1)), 1)
    assert p.stages == tuple(layers) and p.num_layers == (n,)


@pytest.mark.parametrize("name", list(TEMPLATES))
@pytest.mark.parametrize("layers", [[3, 4], [5, 6, 7], [2, 2, 2, 2]])
def test_v2_cross_block_distance_is_blocks_apart_plus_one(name, layers):
    p = template_pattern(name, layers, style="v2")
    d = distance_matrix(p)
    starts = np.cumsum([0] + [L + 1 for L in layers])  # global node of each context C_b
    for b, Lb in enumerate(layers):
        for b2 in range(b + 1, len(layers)):
            for j in range(starts[b] + 1, starts[b] + Lb + 1):
                for i in range(starts[b2] + 1, starts[b2] + layers[b2] + 1):
                    assert d[j, i] == b2 - b + 1


@pytest.mark.parametrize("name", [n for n in TEMPLATES if TEMPLATES[n].uses_k])
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("layers", [[6], [5, 5, 5], [9, 4], [12, 12, 12]])
def test_exact_budget_is_met_or_refused(name, style, layers):
    target = template_pattern("log", layers, style=style).connections
    for budget in (target - 3, target, target + 5):
        try:
            p = budgeted_pattern(name, layers, budget, style)
        except PatternError as e:
            assert "exactly" in str(e) or "below" in str(e)
            continue
        assert p.connections == budget and p.style == style and p.stages == tuple(layers)


def test_table_budget_modes():
    exact = template_table([5, 6, 7], style="v1", budget="exact")
    target = template_pattern("log", [5, 6, 7], style="v1").connections
    assert [r.template for r in exact] == list(TEMPLATES)
    assert all(r.connections == target for r in exact if r.on_budget)
    assert {r.template for r in exact if not r.on_budget} >= {"dense", "chain"}
    own = template_table([5, 6, 7], k=3, style="v1")
    assert all(r.on_budget for r in own)
    assert {r.k for r in own if TEMPLATES[r.template].uses_k} == {"3"}


@pytest.mark.parametrize("style", STYLES)
def test_block_output_all_reads_every_node_and_changes_nothing_else(style):
    layers = [5, 6, 7]
    for name in ("log", "nearest", "nearest_half_hubs"):
        own = template_pattern(name, layers, style=style)
        assert with_block_output(own, "template") == own
        full = template_pattern(name, layers, style=style, output="all")
        assert (full.style, full.stages) == (own.style, own.stages)
        for a, b in zip(own.blocks, full.blocks):
            assert a.inputs[:-1] == b.inputs[:-1]
            assert b.reads(b.num_layers + 1) == tuple(range(b.num_layers + 1))
        # Closed form: each block output trades its rule's reads for all L+1 nodes.
        assert full.connections == own.connections + sum(
            b.num_layers + 1 - len(b.reads(b.num_layers + 1)) for b in own.blocks)
    with pytest.raises(PatternError, match="unknown block output 'some'"):
        template_pattern("log", layers, output="some")
    assert list(BLOCK_OUTPUTS) == ["template", "all"]


@pytest.mark.parametrize("style", STYLES)
def test_k_templates_meet_logs_count_under_the_all_output(style):
    layers = [6, 9]
    target = template_pattern("log", layers, style=style, output="all").connections
    for name in ("nearest", "evenly_spaced", "half_nearest_half_log"):
        p = budgeted_pattern(name, layers, target, style, "all")
        assert p.connections == target
        assert all(b.reads(b.num_layers + 1) == tuple(range(b.num_layers + 1)) for b in p.blocks)
    rows = template_table(layers, style=style, budget="exact", output="all")
    assert all(r.connections == target for r in rows if r.on_budget)
    # Reading every node shortens distances to the output, never lengthens one.
    for name in ("log", "nearest"):
        own = distance_matrix(template_pattern(name, layers, style=style))
        full = distance_matrix(template_pattern(name, layers, style=style, output="all"))
        assert (full <= own).all()


@pytest.mark.parametrize("style", STYLES)
def test_round_trip_and_hash_carry_the_style(style):
    p = template_pattern("log", [3, 4], style=style)
    again = Pattern.from_json(p.to_json())
    assert again == p and again.hash == p.hash and again.style == style
    hashes = {template_pattern("log", [3, 4], style=s).hash for s in STYLES}
    assert len(hashes) == 3


def test_per_block_hashes_are_those_of_the_previous_release():
    """Computed by skipnas 0.1 (before styles): studies keep their trial hashes."""
    assert template_pattern("log", [7, 9]).hash == "efa95e3d8906298e"
    assert template_pattern("nearest", [5, 6], 3).hash == "0e20bffe25546f25"
    assert template_pattern("evenly_spaced_anchored", [12], 4).hash == "61c884a63f3a2b34"


@pytest.mark.parametrize("make, message", [
    (lambda: Pattern([Block([[0], [1]]), Block([[0], [1]])], "v1", [1, 1]), "one block"),
    (lambda: Pattern([Block([[0], [1], [2]])], "v1", [1, 2]), "add up"),
    (lambda: Pattern([Block([[0], [1], [2]])], "per_block", [1, 1]), "only style 'v1'"),
    (lambda: Pattern([Block([[0], [1], [0, 1, 2]]), Block([[0], [1]])], "v2"),
     "node 2: in style 'v2' every layer reads the context"),
    (lambda: Pattern([Block([[0], [0, 1], [1, 2]]), Block([[0], [1]])], "v2"),
     "next context reads every node"),
    (lambda: Pattern([Block([[0], [1]])], "v3"), "unknown style"),
    (lambda: budgeted_pattern("log", [3, 4], 20, "v3"), "unknown style 'v3'; known: per_block"),
])
def test_style_validation(make, message):
    with pytest.raises(PatternError, match=message):
        make()


def test_from_dict_rejects_bad_style_fields():
    good = template_pattern("log", [2, 2], style="v1").to_dict()
    for bad, message in (({**good, "style": "v9"}, "style"), ({**good, "stages": "x"}, "stages"),
                         ({**good, "extra": 1}, "unknown field")):
        with pytest.raises(PatternError, match=message):
            Pattern.from_dict(bad)


def test_v1_has_no_transition_nodes():
    """A link across blocks is one edge: in v1 the network is one DAG of N + 2 nodes."""
    p = template_pattern("dense", [4, 4, 4], style="v1")
    assert p.num_nodes == 14 and distance_stats(p).mbd == 1
    assert all(d in (0, 1) for d in distance_matrix(p)[np.triu_indices(14)].tolist()
               if d != UNREACHABLE)
    assert math.isclose(distance_stats(p).mean, 1.0)


@pytest.mark.parametrize("name", STYLES)
def test_a_style_is_one_object_whose_ranges_and_fixed_edges_fit_its_patterns(name):
    style = STYLES[name]
    assert isinstance(style, Style) and style.name == name and style.doc
    layers = [3, 5, 4]
    for template in TEMPLATES:
        p = template_pattern(template, layers, style=name)
        assert p.num_layers == style.block_layers(layers)
        for b, (block, (low, high)) in enumerate(zip(p.blocks, style.ranges(layers),
                                                     strict=True)):
            assert low <= block.connections <= high
            fixed = style.fixed_edges(block.num_layers, b == len(p.blocks) - 1)
            assert fixed <= set(block.edges())
    # Stored forms name the style, except the implicit one (per_block predates styles).
    stored = [template_pattern("log", layers, style=name).to_dict().get("style"),
              make_space("free", layers, style=name).describe().get("style")]
    assert stored == ([None, None] if style.implicit else [name, name])


def test_every_style_has_a_model_body_and_every_body_a_style():
    from nas.engine.model import BODIES  # torch, imported here only: the rest needs none

    assert list(BODIES) == list(STYLES)
