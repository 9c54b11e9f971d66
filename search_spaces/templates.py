"""The paper's named connection templates, one registry, and their assembly in each network
style.

A template is a rule ``(i, K, n) -> inputs of node i``: node i's sorted earlier nodes, for
templates that take one at K inputs, where n is the last node the rule is applied to. Unless
marked as skipnas' own, each rule is the authors' `_dense_select_indices` (or
`_pre_compute_connections`) from their released code, restated with 1-based node i, node 0 the
block input: the authors' layer ``ui`` is node ``i = ui + 1`` and their offset ``df`` reads
node ``i - 1 - df``.

How a style applies a rule (:func:`template_pattern`):

- ``per_block``: in each block of L layers, nodes 1..L+1 by the rule with n = L+1 (the block
  output follows the rule as if it were one more layer); default K from L.
- ``v1``: over the global layers 1..N of the whole network (n = N); the head, node N+1, reads
  what layer N reads and layer N itself (the authors' classifier reads the last layer's input
  concatenation and its output); default K from N.
- ``v2``: the rule over the global layers as in v1, then only the sources inside a layer's own
  block are kept (the authors' `special_filter` drops x_0 and earlier blocks) and every layer
  also reads its block's context (node 0). A block's next context reads every node of the block;
  the last block's head reads what its last layer reads and that layer.

K-templates meet an exact budget with a fractional K (:func:`budgeted_pattern`): the largest K
that fits, and the deepest layers take K+1 inputs until the budget is met.

The block output convention (:data:`BLOCK_OUTPUTS`) is a separate choice: ``template`` keeps the
rows above for each block's output node, ``all`` makes it read every node of its block, as
DenseNet's transition and classifier read the whole block (:func:`with_block_output`).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .distances import distance_stats
from .pattern import Block, Pattern, PatternError, check_size
from .registry import Registry
from .styles import DEFAULT_STYLE, STYLES, Row, Style, dense_connections

Rule = Callable[[int, int, int], tuple[int, ...]]  # (i, K, n) -> sorted inputs of node i
KOf = Callable[[int], int]                          # node i -> its K


@dataclass(frozen=True)
class Template:
    name: str
    rule: Rule
    uses_k: bool
    doc: str

    def block(self, num_layers: int, k: int | None = None) -> Block:
        """One per_block block of ``num_layers`` layers."""
        k = check_args(self, num_layers, k)
        return Block(self.rule(i, k, num_layers + 1) for i in range(1, num_layers + 2))

    def pattern(self, layers: Sequence[int], k: int | None = None,
                style: str = DEFAULT_STYLE) -> Pattern:
        """The network of ``layers`` per block in ``style``, every node at K inputs."""
        network_style = STYLES[style]
        runs = []
        for seen, last in network_style.runs(layers):
            k_run = check_args(self, seen, k)
            runs.append([self.rule(i, k_run, last) for i in range(1, last + 1)])
        return Pattern(map(Block, network_style.split(layers, runs)), style, layers)


TEMPLATES: Registry[Template] = Registry("template", PatternError)
BLOCK_OUTPUTS: Registry[str] = Registry("block output", PatternError)
BLOCK_OUTPUTS.add("template", "each block's output node reads what the template's rule gives it")
BLOCK_OUTPUTS.add("all", "each block's output node reads every node of its block (DenseNet)")


def with_block_output(pattern: Pattern, output: str) -> Pattern:
    """``pattern`` under the block output convention ``output`` (see :data:`BLOCK_OUTPUTS`)."""
    BLOCK_OUTPUTS[output]  # unknown: PatternError naming the known conventions
    if output == "template":
        return pattern
    return Pattern((Block([*b.inputs[:-1], range(b.num_layers + 1)]) for b in pattern.blocks),
                   pattern.style, pattern.stages)


def register(name: str, uses_k: bool) -> Callable[[Rule], Rule]:
    """Decorator: register the rule ``(i, K, n) -> inputs of node i`` as template ``name``."""
    def wrap(rule: Rule) -> Rule:
        TEMPLATES.add(name, Template(name, rule, uses_k, (rule.__doc__ or "").strip()))
        return rule
    return wrap


def default_k(num_layers: int) -> int:
    """The authors' K for NEAREST and EVENLY-SPACED: floor(log2(L+1)) + 1, L the layers the
    rule sees (a block's in per_block, the network's in v1 and v2)."""
    return int(num_layers + 1).bit_length()


def check_args(template: Template, num_layers: int, k: int | None) -> int:
    """Validate (L, K) for ``template``; returns the K to use (0 for templates without K)."""
    if not isinstance(num_layers, (int, np.integer)) or num_layers <= 0:
        raise PatternError(f"number of layers must be a positive integer, got {num_layers!r}")
    if not template.uses_k:
        return 0
    if k is None:
        return default_k(num_layers)  # L+1 when L = 1: clipped at node 0 like any K
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= num_layers:
        raise PatternError(f"template {template.name!r}: K must be in 1..L={num_layers}, got {k!r}")
    return int(k)


def assemble(layers: Sequence[int], style: Style, inputs: Callable[[int], Row]) -> Pattern:
    """The network in ``style`` in which node i of each run of a rule (:meth:`Style.runs`)
    reads ``inputs(i)``."""
    runs = [[inputs(i) for i in range(1, last + 1)] for _, last in style.runs(layers)]
    return Pattern(map(Block, style.split(layers, runs)), style.name, layers)


# --- the rules ------------------------------------------------------------------------------

@register("dense", uses_k=False)
def _dense(i: int, k: int, n: int) -> tuple[int, ...]:
    """DenseNet: node i reads every earlier node 0..i-1 (authors' method 4)."""
    return tuple(range(i))


@register("chain", uses_k=False)
def _chain(i: int, k: int, n: int) -> tuple[int, ...]:
    """Plain chain: node i reads only node i-1."""
    return (i - 1,)


@register("log", uses_k=False)
def _log(i: int, k: int, n: int) -> tuple[int, ...]:
    """LOG (Log-DenseNet, authors' method 0): node i reads i-1, i-2, i-4, ..., i-2^k for every
    2^k <= i (floor(log2 i) + 1 inputs)."""
    return tuple(sorted(i - 2 ** e for e in range(i.bit_length()) if 2 ** e <= i))


@register("nearest", uses_k=True)
def _nearest(i: int, k: int, n: int) -> tuple[int, ...]:
    """NEAREST-K (authors' method 2): node i reads the K most recent nodes i-K..i-1, clipped at
    node 0. Default K = floor(log2(L+1)) + 1."""
    return tuple(range(max(0, i - k), i))


@register("evenly_spaced", uses_k=True)
def _evenly_spaced(i: int, k: int, n: int) -> tuple[int, ...]:
    """EVENLY-SPACED-K (authors' method 3): node i reads i-1-floor(m*i/K) for m = 0..K-1,
    duplicates dropped: it starts at i-1 and node 0 is not forced. The offsets are accumulated
    in floating point exactly as the authors' code does (delta = i/K added m times), which
    differs from exact arithmetic for some (i, K). Default K = floor(log2(L+1)) + 1."""
    delta, acc, offsets = i / k, 0.0, list[int]()
    for _ in range(k):
        if not offsets or int(acc) != offsets[-1]:
            offsets.append(int(acc))
        acc += delta
    return tuple(sorted(i - 1 - o for o in offsets))


@register("evenly_spaced_anchored", uses_k=True)
def _evenly_spaced_anchored(i: int, k: int, n: int) -> tuple[int, ...]:
    """skipnas' own EVENLY-SPACED variant: node i reads K nodes spread evenly over 0..i-1,
    always including node 0 and i-1 (all of them while i <= K; K = 1 reads i-1 only)."""
    if i <= k:
        return tuple(range(i))
    if k == 1:
        return (i - 1,)
    # Spacing (i-1)/(K-1) > 1 here, so rounding never merges two points.
    return tuple(int(x) for x in np.rint(np.linspace(0, i - 1, k)))


@register("nearest_half", uses_k=False)
def _nearest_half(i: int, k: int, n: int) -> tuple[int, ...]:
    """NEAREST-HALF (authors' method 6): node i reads its ceil(i/2) most recent nodes."""
    return tuple(range(i - (i + 1) // 2, i))


@register("every_other", uses_k=False)
def _every_other(i: int, k: int, n: int) -> tuple[int, ...]:
    """EVERY-OTHER (authors' method 7): node i reads i-1, i-3, i-5, ... down to node 0 or 1."""
    return tuple(range((i - 1) % 2, i, 2))


@register("nearest_half_hubs", uses_k=False)
def _nearest_half_hubs(i: int, k: int, n: int) -> tuple[int, ...]:
    """NEAREST-HALF + HUBS (authors' method 8): nearest-half, plus the hubs reached from the
    oldest of those nodes by pos <- (pos - 1) // 2 down to node 0 (about i/4, i/8, ...)."""
    nearest = range(i - (i + 1) // 2, i)
    hubs, pos = [], nearest[0]
    while pos > 0:
        pos = (pos - 1) // 2
        hubs.append(pos)
    return tuple(sorted({*nearest, *hubs}))


@register("half_nearest_half_log", uses_k=True)
def _half_nearest_half_log(i: int, k: int, n: int) -> tuple[int, ...]:
    """skipnas' own mix (named nearest_half_and_log before 0.2): node i reads its ceil(K/2)
    nearest nodes (offsets 1..ceil(K/2)) and floor(K/2) log offsets, the smallest powers of two
    beyond that range. Offsets that reach before node 0 are replaced by the next unused nearest
    offsets, so node i reads min(i, K) nodes, the same budget as NEAREST-K."""
    half = (k + 1) // 2
    logs = [2 ** e for e in range(i.bit_length() + 1) if 2 ** e > half][: k - half]
    offsets = [o for o in list(range(1, half + 1)) + logs if o <= i]
    fill = (o for o in range(1, i + 1) if o not in offsets)
    while len(offsets) < min(i, k):
        offsets.append(next(fill))
    return tuple(sorted(i - o for o in offsets))


LOGLOG_MIN_INPUTS = 4  # the authors pad to their bottleneck_width default, 4.0


@register("loglog", uses_k=False)
def _loglog(i: int, k: int, n: int) -> tuple[int, ...]:
    """LOG-LOG (authors' AnytimeLogLogDenseNet): split nodes 0..n into segments of about
    sqrt(length); the segment ends (keys) read every earlier key, the nodes inside a segment read
    the key before them and their predecessor, and each segment recurses. Nodes left with fewer
    than 4 inputs take offsets 1, 2, 4, 8, ... until they have 4 (the authors' padding). The
    authors also force block ends to be keys in V1; skipnas' rule sees no block ends."""
    return _loglog_rows(n)[i - 1]


@functools.lru_cache(maxsize=256)
def _loglog_rows(n: int) -> tuple[tuple[int, ...], ...]:
    adj: list[set[int]] = [{i - 1} for i in range(n + 1)]

    def connect(a: int, b: int) -> None:  # the interval [a, b)
        if b - a <= 2:
            return
        step = math.isqrt(b - a)
        keys = list(range(a + (b - 1 - a) % step, b, step))
        keys = ([a] if keys[0] != a else []) + keys + ([b - 1] if keys[-1] != b - 1 else [])
        for ki in range(1, len(keys)):
            key, prev = keys[ki], keys[ki - 1]
            adj[key].update(keys[:ki])
            for node in range(prev + 1, key):
                adj[node].add(prev)
            connect(prev, key + 1)

    connect(0, n + 1)
    rows = []
    for i in range(1, n + 1):
        row = sorted(j for j in adj[i] if 0 <= j < i)
        for offset in (1, 2, 4, 8, 16, 32):
            if len(row) >= LOGLOG_MIN_INPUTS or i - offset < 0:
                break
            if i - offset not in row:
                row.append(i - offset)
        rows.append(tuple(sorted(row)))
    return tuple(rows)


# --- patterns -------------------------------------------------------------------------------

def _depths(num_layers: int | Sequence[int]) -> list[int]:
    depths = [num_layers] if isinstance(num_layers, (int, np.integer)) else list(num_layers)
    if not depths:
        raise PatternError("num_layers: at least one block is needed")
    for L in depths:
        if not isinstance(L, (int, np.integer)) or L <= 0:
            raise PatternError(f"number of layers must be a positive integer, got {L!r}")
    check_size(sum(depths))
    return [int(L) for L in depths]


def template_pattern(name: str, num_layers: int | Sequence[int], k: int | None = None,
                     style: str = DEFAULT_STYLE, output: str = "template") -> Pattern:
    """The network of template ``name`` (its own connection count) in ``style`` under the block
    output convention ``output``; ``num_layers`` is one depth or one per block."""
    STYLES[style]  # unknown: PatternError naming the known styles
    return with_block_output(TEMPLATES[name].pattern(_depths(num_layers), k, style), output)


def split_budget(budget: int, weights: Sequence[int],
                 ranges: Sequence[tuple[int, int]]) -> list[int]:
    """Split a network budget over blocks in proportion to ``weights`` (log's counts, so the
    default budget gives every block log's count), kept within each block's (low, high) range;
    the caller guarantees the total is feasible."""
    lows, highs = [r[0] for r in ranges], [r[1] for r in ranges]
    shares = [min(max(budget * w // sum(weights), lo), hi)
              for w, lo, hi in zip(weights, lows, highs)]
    # Hand out what rounding and clamping left over one edge at a time, deepest block first.
    diff, b = budget - sum(shares), len(shares) - 1
    while diff:
        step = 1 if diff > 0 else -1
        if lows[b] <= shares[b] + step <= highs[b]:
            shares[b] += step
            diff -= step
        b = (b - 1) % len(shares)
    return shares


def _k_of(k: int, bumped: set[int]) -> KOf:
    """K for every node, K+1 for the ``bumped`` ones."""
    return lambda i: k + 1 if i in bumped else k


Fitted = tuple[Pattern, str]  # the pattern and its K: "4", or "4-5" for a K between


def _fit_k(build: Callable[[KOf], Pattern], nodes: list[int], k_max: int, budget: int,
           what: str) -> Fitted:
    """The pattern at exactly ``budget``: the largest K whose count fits, then the first
    ``extra`` of ``nodes`` (deepest first) at K+1."""
    counts: dict[int, int] = {}
    for k in range(1, k_max + 1):
        counts[k] = build(_k_of(k, set())).connections
        if counts[k] > budget:
            break
    fitting = [k for k, c in counts.items() if c <= budget]
    if not fitting:
        raise PatternError(f"{what}: budget {budget} is below its smallest count {counts[1]}")
    k = max(fitting)
    for extra in range(len(nodes) + 1):
        pattern = build(_k_of(k, set(nodes[:extra])))
        if pattern.connections == budget:
            return pattern, f"{k}-{k + 1}" if extra else str(k)
        if pattern.connections > budget:
            break
    raise PatternError(f"{what}: no K between {k} and {k + 1} gives exactly {budget} "
                       f"connections")


def budgeted_block(name: str, num_layers: int, budget: int) -> Block:
    """Template ``name`` as one per_block block at exactly ``budget`` connections.

    Templates with K take the largest K that fits, and the deepest nodes take K+1 inputs until
    the budget is met (a K between two integers); the others fit only their own count."""
    return _budgeted_block(name, num_layers, budget, "template")[0].blocks[0]


def _budgeted_block(name: str, num_layers: int, budget: int, output: str) -> Fitted:
    template = TEMPLATES[name]
    if not template.uses_k:
        block = with_block_output(Pattern([template.block(num_layers)]), output).blocks[0]
        if block.connections != budget:
            raise PatternError(f"template {name!r} has {block.connections} connections at "
                               f"L={num_layers}, not the budget {budget}")
        return Pattern([block]), "-"
    check_size(num_layers)
    low, high = num_layers + 1, dense_connections(num_layers)
    if not low <= budget <= high:
        raise PatternError(f"budget {budget} impossible for L={num_layers}: a block has "
                           f"{low}..{high} connections")
    last = num_layers + 1

    def build(k_of: KOf) -> Pattern:
        block = Block(template.rule(i, k_of(i), last) for i in range(1, last + 1))
        return with_block_output(Pattern([block]), output)

    return _fit_k(build, list(range(last, 0, -1)), num_layers, budget,
                  f"template {name!r} at L={num_layers}")


def budgeted_pattern(name: str, layers: Sequence[int], budget: int,
                     style: str = DEFAULT_STYLE, output: str = "template") -> Pattern:
    """Template ``name`` in ``style`` under the block output convention ``output``, at exactly
    ``budget`` connections over the network (per block, the budget is split as the search
    spaces split it: in proportion to log's counts)."""
    return _budgeted(name, layers, budget, style, output)[0]


def _budgeted(name: str, layers: Sequence[int], budget: int, style: str,
              output: str = "template") -> Fitted:
    template = TEMPLATES[name]
    layers = _depths(layers)
    BLOCK_OUTPUTS[output]  # unknown: PatternError naming the known conventions
    network_style = STYLES[style]
    if network_style.rules_per_block:
        log_counts = [b.connections for b in template_pattern("log", layers, output=output).blocks]
        ranges = network_style.ranges(layers)
        if not sum(low for low, _ in ranges) <= budget <= sum(high for _, high in ranges):
            raise PatternError(f"budget {budget} impossible for layers {layers}")
        fitted = [_budgeted_block(name, L, b, output)
                  for L, b in zip(layers, split_budget(budget, log_counts, ranges))]
        labels = list(dict.fromkeys(label for _, label in fitted))
        return Pattern(p.blocks[0] for p, _ in fitted), "/".join(labels)
    if not template.uses_k:
        pattern = with_block_output(template.pattern(layers, style=style), output)
        if pattern.connections != budget:
            raise PatternError(f"template {name!r} has {pattern.connections} connections in "
                               f"{style} at layers {layers}, not the budget {budget}")
        return pattern, "-"
    n = sum(layers)
    # Deepest layers first, the last one last: its K also widens the head's reads.
    order = list(range(n - 1, 0, -1)) + [n]
    return _fit_k(lambda k_of: with_block_output(
                      assemble(layers, network_style, lambda i: template.rule(i, k_of(i), n)),
                      output),
                  order, n, budget,
                  f"template {name!r} in {style} at layers {layers}")


# --- the table ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TemplateRow:
    """One template's numbers: what `skipnas templates` prints."""
    template: str
    k: str                   # "-" without K, "4", or "4-5" for a fractional K
    connections: int
    mbd: int
    mean_distance: float
    on_budget: bool          # exact mode: meets the budget (False: shown at its own count)


def _k_label(template: Template, k: int | None, layers: Sequence[int], style: str) -> str:
    if not template.uses_k:
        return "-"
    if k is not None:
        return str(k)
    seen = STYLES[style].rule_layers(layers)
    return "/".join(dict.fromkeys(str(default_k(n)) for n in seen))


def template_table(layers: int | Sequence[int], k: int | None = None,
                   names: Sequence[str] | None = None, style: str = DEFAULT_STYLE,
                   budget: str = "authors", output: str = "template") -> list[TemplateRow]:
    """Connections, MBD and mean distance of each template (default: all) in ``style``, under
    the block output convention ``output``.

    ``budget="authors"``: each template at its own count, K-templates at ``k`` (default: the
    authors' K). ``budget="exact"``: every template that can, at log's count in the same style
    (K-templates with a fractional K); the others at their own count, marked off budget."""
    if budget not in ("authors", "exact"):
        raise PatternError(f"budget {budget!r}: use 'authors' or 'exact'")
    depths = _depths(layers)
    target = template_pattern("log", depths, style=style, output=output).connections
    rows = []
    for name in names or list(TEMPLATES):
        template = TEMPLATES[name]
        pattern = template_pattern(name, depths, k, style, output)
        label, on_budget = _k_label(template, k, depths, style), True
        if budget == "exact":
            try:
                pattern, label = _budgeted(name, depths, target, style, output)
            except PatternError:
                on_budget = False
        stats = distance_stats(pattern)
        rows.append(TemplateRow(name, label, pattern.connections, stats.mbd, stats.mean,
                                on_budget))
    return rows
