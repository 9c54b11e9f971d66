"""The paper's named connection templates, one registry.

A template is a pure function ``(L, K) -> Block`` that applies one rule to every node
i = 1..L+1 of a block (the block output, node L+1, follows the same rule as the layers).
Templates that take no K ignore it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .distances import distance_stats
from .pattern import Block, Pattern, PatternError
from .registry import Registry

Rule = Callable[[int, int], tuple[int, ...]]  # (i, K) -> sorted inputs of node i


@dataclass(frozen=True)
class Template:
    name: str
    rule: Rule
    uses_k: bool
    doc: str

    def block(self, num_layers: int, k: int | None = None) -> Block:
        """The block of ``num_layers`` layers that this template builds."""
        k = check_args(self, num_layers, k)
        return Block(self.rule(i, k) for i in range(1, num_layers + 2))


TEMPLATES: Registry[Template] = Registry("template", PatternError)


def register(name: str, uses_k: bool) -> Callable[[Rule], Rule]:
    """Decorator: register the rule ``(i, K) -> inputs of node i`` as template ``name``."""
    def wrap(rule: Rule) -> Rule:
        TEMPLATES.add(name, Template(name, rule, uses_k, (rule.__doc__ or "").strip()))
        return rule
    return wrap


def default_k(num_layers: int) -> int:
    """K used when none is given: ceil(log2(L+1)), about the in-degree of the log template."""
    return max(1, int(np.ceil(np.log2(num_layers + 1))))


def check_args(template: Template, num_layers: int, k: int | None) -> int:
    """Validate (L, K) for ``template``; returns the K to use."""
    if not isinstance(num_layers, (int, np.integer)) or num_layers <= 0:
        raise PatternError(f"number of layers must be a positive integer, got {num_layers!r}")
    if not template.uses_k:
        return 0
    k = default_k(num_layers) if k is None else k
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= num_layers:
        raise PatternError(f"template {template.name!r}: K must be in 1..L={num_layers}, got {k!r}")
    return int(k)


@register("dense", uses_k=False)
def _dense(i: int, k: int) -> tuple[int, ...]:
    """DenseNet: node i reads every earlier node 0..i-1."""
    return tuple(range(i))


@register("chain", uses_k=False)
def _chain(i: int, k: int) -> tuple[int, ...]:
    """Plain chain: node i reads only node i-1."""
    return (i - 1,)


@register("nearest", uses_k=True)
def _nearest(i: int, k: int) -> tuple[int, ...]:
    """NEAREST-K: node i reads the K most recent nodes i-K..i-1 (all of them while i <= K)."""
    return tuple(range(max(0, i - k), i))


@register("evenly_spaced", uses_k=True)
def _evenly_spaced(i: int, k: int) -> tuple[int, ...]:
    """EVENLY-SPACED-K: node i reads K nodes spread evenly over 0..i-1, always including 0 and
    i-1 (all of them while i <= K; K = 1 reads i-1 only)."""
    if i <= k:
        return tuple(range(i))
    if k == 1:
        return (i - 1,)
    # Spacing (i-1)/(K-1) > 1 here, so rounding never merges two points.
    return tuple(int(x) for x in np.rint(np.linspace(0, i - 1, k)))


@register("log", uses_k=False)
def _log(i: int, k: int) -> tuple[int, ...]:
    """Log-DenseNet V1: node i reads i-1, i-2, i-4, ..., i-2^k for every 2^k <= i
    (floor(log2 i) + 1 inputs)."""
    return tuple(sorted(i - 2 ** e for e in range(i.bit_length()) if 2 ** e <= i))


@register("nearest_half_and_log", uses_k=True)
def _nearest_half_and_log(i: int, k: int) -> tuple[int, ...]:
    """Half nearest, half log: node i reads its ceil(K/2) nearest nodes (offsets 1..ceil(K/2)) and
    floor(K/2) log offsets, the smallest powers of two beyond that range. Offsets that reach
    before node 0 are replaced by the next unused nearest offsets, so node i reads min(i, K)
    nodes, the same budget as NEAREST-K and EVENLY-SPACED-K."""
    half = (k + 1) // 2
    logs = [2 ** e for e in range(i.bit_length() + 1) if 2 ** e > half][: k - half]
    offsets = [o for o in list(range(1, half + 1)) + logs if o <= i]
    fill = (o for o in range(1, i + 1) if o not in offsets)
    while len(offsets) < min(i, k):
        offsets.append(next(fill))
    return tuple(sorted(i - o for o in offsets))


def template_pattern(name: str, num_layers: int | Sequence[int], k: int | None = None) -> Pattern:
    """A pattern whose every block follows template ``name``; ``num_layers`` is one depth or one
    per block."""
    template = TEMPLATES[name]
    depths = [num_layers] if isinstance(num_layers, (int, np.integer)) else list(num_layers)
    if not depths:
        raise PatternError("num_layers: at least one block is needed")
    return Pattern(template.block(L, k) for L in depths)


def budgeted_block(name: str, num_layers: int, budget: int) -> Block:
    """Template ``name`` at exactly ``budget`` connections.

    Templates with K take the largest K that fits, and the deepest nodes take K+1 inputs until
    the budget is met (a K between two integers); the others fit only their own count."""
    template = TEMPLATES[name]
    if not template.uses_k:
        block = template.block(num_layers)
        if block.connections != budget:
            raise PatternError(f"template {name!r} has {block.connections} connections at "
                               f"L={num_layers}, not the budget {budget}")
        return block
    nodes = range(1, num_layers + 2)
    low, high = num_layers + 1, (num_layers + 1) * (num_layers + 2) // 2
    if not low <= budget <= high:
        raise PatternError(f"budget {budget} impossible for L={num_layers}: a block has "
                           f"{low}..{high} connections")
    k = max(k for k in range(1, num_layers + 1) if sum(min(i, k) for i in nodes) <= budget)
    extra = budget - sum(min(i, k) for i in nodes)
    # extra < L+1-K: the nodes that can read K+1 inputs, so the deepest `extra` of them suffice.
    return Block(template.rule(i, k + 1 if i > num_layers + 1 - extra else k) for i in nodes)


@dataclass(frozen=True)
class TemplateRow:
    """One template's numbers at one depth: what `skipnas templates` prints."""
    template: str
    k: int | None            # None for templates that take no K
    connections: int
    mbd: int
    mean_distance: float


def template_table(num_layers: int, k: int | None = None,
                   names: Sequence[str] | None = None) -> list[TemplateRow]:
    """Connections, MBD and mean distance of each template (default: all) on one block of
    ``num_layers`` layers; K-templates use ``k`` (default :func:`default_k`)."""
    rows = []
    for name in names or list(TEMPLATES):
        template = TEMPLATES[name]
        used_k = check_args(template, num_layers, k)
        block = template.block(num_layers, k)
        stats = distance_stats(Pattern([block]))
        rows.append(TemplateRow(name, used_k if template.uses_k else None, block.connections,
                                stats.mbd, stats.mean))
    return rows
