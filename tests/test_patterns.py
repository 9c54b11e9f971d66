"""Pattern type, backprop distances and templates against closed forms."""
import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search_spaces import (
    TEMPLATES,
    Block,
    Pattern,
    PatternError,
    distance_matrix,
    distance_stats,
    template_pattern,
)
from search_spaces.distances import UNREACHABLE

DEPTHS = [1, 2, 5, 7, 12, 16, 23, 32, 40]


def stats(name, L, k=None):
    p = template_pattern(name, L, k)
    return p, distance_stats(p)


@pytest.mark.parametrize("L", DEPTHS)
def test_dense_closed_form(L):
    p, s = stats("dense", L)
    assert p.connections == (L + 1) * (L + 2) // 2
    assert s.mbd == 1 and s.mean == 1.0 and s.unreachable_pairs == 0


@pytest.mark.parametrize("L", DEPTHS)
def test_chain_closed_form(L):
    p, s = stats("chain", L)
    assert p.connections == L + 1
    assert s.mbd == L + 1
    # d(j, i) = i - j over all pairs of L+2 nodes: mean = (n+1)/3 with n = L+2 nodes.
    assert s.mean == pytest.approx((L + 3) / 3)


def valid_lk(ks):
    return [(L, k) for L in DEPTHS for k in ks if k <= L]


@pytest.mark.parametrize("L, k", valid_lk([1, 2, 3, 5]))
def test_nearest_mbd(L, k):
    _, s = stats("nearest", L, k)
    assert s.mbd == math.ceil((L + 1) / k)


@pytest.mark.parametrize("L", DEPTHS)
def test_log_closed_form(L):
    p, s = stats("log", L)
    assert s.mbd == max(bin(d).count("1") for d in range(1, L + 2))
    assert p.connections == sum(int(math.floor(math.log2(i))) + 1 for i in range(1, L + 2))
    d = distance_matrix(p)
    for j in range(L + 2):
        for i in range(j + 1, L + 2):
            assert d[j, i] == bin(i - j).count("1")


@pytest.mark.parametrize("L, k", valid_lk([1, 2, 4, 5]))
def test_k_templates_share_a_budget(L, k):
    """The K-templates give node i exactly min(i, K) inputs."""
    expected = sum(min(i, k) for i in range(1, L + 2))
    for name in ("nearest", "evenly_spaced", "evenly_spaced_anchored", "half_nearest_half_log"):
        p = template_pattern(name, L, k)
        assert p.connections == expected, name


def test_evenly_spaced_anchored_includes_ends():
    block = TEMPLATES["evenly_spaced_anchored"].block(30, 4)
    for i, row in enumerate(block.inputs, start=1):
        assert len(row) == min(i, 4)
        assert row[0] == 0 and row[-1] == i - 1


def test_evenly_spaced_is_the_authors_and_does_not_force_node_0():
    block = TEMPLATES["evenly_spaced"].block(30, 4)
    assert block.reads(12) == (2, 5, 8, 11)   # 11 - floor(m * 12 / 4), m = 0..3
    assert all(row[-1] == i - 1 for i, row in enumerate(block.inputs, start=1))
    assert any(row[0] != 0 for row in block.inputs)


@pytest.mark.parametrize("name", list(TEMPLATES))
@pytest.mark.parametrize("L", DEPTHS)
def test_every_template_valid_and_round_trips(name, L):
    k = min(max(1, L // 2), 3)
    p = template_pattern(name, [L, max(1, L // 2)], k)
    again = Pattern.from_json(p.to_json())
    assert again == p and again.hash == p.hash
    assert Pattern.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert all(b.num_layers in (L, max(1, L // 2)) for b in p.blocks)


def test_hash_differs_between_patterns():
    hashes = {template_pattern(n, 12, 3).hash for n in TEMPLATES}
    assert len(hashes) == len(TEMPLATES)
    assert template_pattern("log", [4, 4]).hash != template_pattern("log", [4]).hash


def test_hash_stable_across_processes():
    p = template_pattern("log", [7, 9])
    code = ("from search_spaces import template_pattern;"
            "print(template_pattern('log', [7, 9]).hash)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == p.hash


def test_blocks_are_chained():
    """Two chain blocks of L layers equal one long chain: MBD = 2(L+1)."""
    _, s = stats("chain", [3, 3])
    assert s.mbd == 8
    p = template_pattern("dense", [3, 3])
    d = distance_matrix(p)
    assert p.num_nodes == 9 and d[0, 8] == 2 and d[0, 4] == 1 and d[5, 8] == 1


@pytest.mark.parametrize("inputs, message", [
    ([[0], [2]], "node 2 reads node 2"),
    ([[0], [0, 0]], "duplicate"),
    ([[0], [1, 0]], "unsorted"),
    ([[0], []], "reads nothing"),
    ([[0], [0], [0, 2]], "layer 1 is unreachable"),
    ([[0]], "at least 1 layer"),
    ([[0], [-1, 1]], "node -1"),
])
def test_validation_errors(inputs, message):
    with pytest.raises(PatternError, match=message):
        Block(inputs)


@pytest.mark.parametrize("data, field", [
    ({"blocks": [{"num_layers": 2, "inputs": [[0], [1]]}]}, "blocks\\[0\\].num_layers"),
    ({"blocks": [{"num_layers": 1, "inputs": [[0], ["a"]]}]}, "blocks\\[0\\].inputs"),
    ({"blocks": [{"num_layers": 1, "inputs": [[0], [3]]}]}, "blocks\\[0\\].inputs: node 2"),
    ({"blocks": "x"}, "blocks"),
    ([], "blocks"),
])
def test_from_dict_names_the_field(data, field):
    with pytest.raises(PatternError, match=field):
        Pattern.from_dict(data)


def test_bad_template_args():
    with pytest.raises(PatternError, match="unknown template"):
        template_pattern("lgo", 4)
    with pytest.raises(PatternError, match="K must be in 1..L=4"):
        template_pattern("nearest", 4, 5)
    with pytest.raises(PatternError, match="positive"):
        template_pattern("log", 0)


@st.composite
def random_patterns(draw):
    """Random valid multi-block patterns: each node reads a non-empty random subset, and the
    output reads every otherwise unread layer, so no layer is dead."""
    blocks = []
    for _ in range(draw(st.integers(1, 3))):
        L = draw(st.integers(1, 12))
        rows = [sorted(draw(st.sets(st.integers(0, i - 1), min_size=1, max_size=i)))
                for i in range(1, L + 1)]
        read = {j for r in rows for j in r}
        out = set(draw(st.sets(st.integers(0, L), min_size=1, max_size=L + 1)))
        out |= {i for i in range(1, L + 1) if i not in read}
        blocks.append(Block(rows + [sorted(out)]))
    return Pattern(blocks)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(random_patterns())
def test_distances_are_shortest_paths(p):
    d = distance_matrix(p)
    n = p.num_nodes
    edges = set()
    offset = 0
    for b in p.blocks:
        edges |= {(offset + j, offset + i) for j, i in b.edges()}
        offset += b.num_layers + 1
    for j in range(n):
        for i in range(n):
            if (j, i) in edges:
                assert d[j, i] == 1
            elif j != i:
                assert d[j, i] != 1
            if j > i:
                assert d[j, i] == UNREACHABLE
    reach = d != UNREACHABLE
    # Triangle inequality wherever both legs exist (vectorised over k).
    for j in range(n):
        for i in range(j + 1, n):
            ks = reach[j] & reach[:, i]
            if ks.any():
                assert reach[j, i]
                assert d[j, i] <= (d[j, ks] + d[ks, i]).min()
    assert Pattern.from_json(p.to_json()) == p


def test_stats_histogram_counts_pairs():
    p, s = stats("nearest", 10, 3)
    n = p.num_nodes
    assert sum(s.histogram) == s.pairs == n * (n - 1) // 2
    assert s.mean == pytest.approx(sum(d * c for d, c in enumerate(s.histogram)) / s.pairs)


def test_unreachable_pairs_counted():
    # Node 1 and node 2 both read node 0 only: no path 1 -> 2.
    p = Pattern([Block([[0], [0], [1, 2]])])
    s = distance_stats(p)
    assert s.unreachable_pairs == 1 and s.pairs == 5


def test_cli_templates_table():
    from nas.cli import main
    assert main(["templates", "--layers", "32", "--k", "5"]) == 0


@pytest.mark.parametrize("argv, style, budget", [
    (["--style", "v1", "--k", "6"], "v1", "authors"),
    (["--style", "v2", "--budget", "exact"], "v2", "exact"),
    ([], "per_block", "authors"),
])
def test_cli_templates_one_row_per_template_in_a_style(capsys, argv, style, budget):
    from nas.cli import main
    from search_spaces import template_table

    assert main(["templates", "--layers", "12", "12", "12", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"style {style}" in lines[0]
    rows = [line.split() for line in lines[3:] if line and not line.startswith("*")]
    k = 6 if "--k" in argv else None
    expected = template_table([12, 12, 12], k, style=style, budget=budget)
    assert [r[0] for r in rows] == [e.template for e in expected]
    for row, e in zip(rows, expected):
        marked = row[1] == "*"
        assert marked == (not e.on_budget)
        assert row[1 + marked:] == [e.k, str(e.connections), str(e.mbd), f"{e.mean_distance:.4f}"]


@pytest.mark.parametrize("argv, message", [
    (["--layers", "0"], "positive"),
    (["--layers", "4", "--k", "5"], "K must be"),
    (["nope", "--layers", "4"], "unknown template"),
])
def test_cli_templates_bad_input(argv, message):
    out = subprocess.run([sys.executable, "-m", "nas.cli", "templates", *argv],
                         capture_output=True, text=True)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_search_spaces_never_imports_torch_or_optuna():
    code = ("import sys, search_spaces, search_spaces.spaces;"
            "print(sorted(m for m in ('torch', 'optuna', 'nas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
