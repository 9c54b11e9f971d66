"""Search spaces: objects whose ``suggest(trial)`` returns a valid pattern with exactly the
connection budget, using only ``trial.suggest_*`` (duck-typed: Optuna's Trial, or a test double).

Spaces with many binary choices use random keys: one float in [0, 1] per choice, decoded
deterministically into a feasible pattern (confident keys first, each decision kept only while
the budget stays reachable). Every sample is valid by construction; nothing is rejected and
resampled, and continuous samplers (TPE, CMA-ES) apply.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from .pattern import Block, Pattern, PatternError, check_size
from .registry import Registry
from .styles import DEFAULT_STYLE, STYLES, Edge
from .templates import TEMPLATES, assemble, budgeted_pattern, split_budget, template_pattern

MAX_LISTED = 10_000  # patterns all_patterns lists; more is a sample's job (bench.patterns)


class Trial(Protocol):
    def suggest_float(self, name: str, low: float, high: float) -> float: ...
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class SearchSpace:
    """A budgeted space over patterns with the given layers per block, in a network style."""

    name: ClassVar[str]

    def __init__(self, layers: Sequence[int], budget: int | None = None,
                 style: str = DEFAULT_STYLE):
        self.layers = tuple(int(L) for L in layers)
        if not self.layers or min(self.layers) < 1:
            raise PatternError(f"search space {self.name!r}: layers must be positive, "
                               f"got {list(layers)}")
        check_size(sum(self.layers))
        self.network_style = STYLES[style]  # unknown: PatternError naming the known styles
        self.style = style
        log = template_pattern("log", self.layers, style=style)
        self.budget = log.connections if budget is None else int(budget)
        ranges = self.network_style.ranges(self.layers)
        low, high = sum(r[0] for r in ranges), sum(r[1] for r in ranges)
        if not low <= self.budget <= high:
            raise PatternError(f"search space {self.name!r}: budget {self.budget} impossible for "
                               f"layers {list(self.layers)} in {style} (must be in "
                               f"{low}..{high})")
        self.block_budgets = split_budget(self.budget, [b.connections for b in log.blocks],
                                          ranges)

    def suggest(self, trial: Trial) -> Pattern:
        raise NotImplementedError

    def all_patterns(self) -> list[Pattern] | None:
        """Every pattern of the space, where it is small enough to list (else None)."""
        return None

    def params_of(self, pattern: Pattern) -> dict[str, Any] | None:
        """Params that :meth:`suggest` decodes to ``pattern`` (None: this space cannot say)."""
        return None

    def describe(self) -> dict[str, Any]:
        out = {"space": self.name, "layers": list(self.layers), "budget": self.budget}
        return out if self.network_style.implicit else {**out, "style": self.style}


SEARCH_SPACES: Registry[type[SearchSpace]] = Registry("search space", PatternError)


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    return SEARCH_SPACES.add(cls.name, cls)


def make_space(name: str, layers: Sequence[int], budget: int | None = None,
               style: str = DEFAULT_STYLE, **kwargs: Any) -> SearchSpace:
    """The registered space ``name`` at these layers, budget and style."""
    return SEARCH_SPACES[name](layers, budget, style, **kwargs)


@register_space
class TemplatesSpace(SearchSpace):
    """Choose one of the paper's templates that can meet the budget exactly (K-templates always
    can, with a fractional K; K-free templates only at their own count)."""

    name = "templates"

    def __init__(self, layers: Sequence[int], budget: int | None = None,
                 style: str = DEFAULT_STYLE, templates: Sequence[str] | None = None):
        super().__init__(layers, budget, style)
        names = list(templates) if templates is not None else list(TEMPLATES)
        self.templates = [n for n in names if self._fits(n)]
        if not self.templates:
            raise PatternError(f"search space 'templates': none of {names} meets the budget "
                               f"{self.budget} at layers {list(self.layers)}")

    def _fits(self, name: str) -> bool:
        try:
            self.pattern(name)
            return True
        except PatternError:
            return False

    def pattern(self, name: str) -> Pattern:
        return budgeted_pattern(name, self.layers, self.budget, self.style)

    def suggest(self, trial: Trial) -> Pattern:
        return self.pattern(trial.suggest_categorical("template", self.templates))

    def all_patterns(self) -> list[Pattern]:
        return list({p.hash: p for p in map(self.pattern, self.templates)}.values())

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "templates": self.templates}


def _reachable_sums(weights: Sequence[int]) -> list[int]:
    """suffix[t]: bitset of the sums reachable with distinct items weights[t:]."""
    suffix = [1] * (len(weights) + 1)
    for t in range(len(weights) - 1, -1, -1):
        suffix[t] = suffix[t + 1] | (suffix[t + 1] << weights[t])
    return suffix


def count_subsets(weights: Iterable[int], target: int) -> int:
    """How many subsets of ``weights`` (distinct items) sum exactly to ``target``."""
    ways = [1] + [0] * target
    for w in weights:
        for t in range(target, w - 1, -1):
            ways[t] += ways[t - w]
    return ways[target]


def decode_subset(weights: Sequence[int], keys: Sequence[float], target: int) -> list[int]:
    """Indices of a subset of ``weights`` summing exactly to ``target``, following ``keys``
    (key >= 0.5: wanted), most confident keys decided first."""
    order = sorted(range(len(weights)), key=lambda t: -abs(keys[t] - 0.5))
    suffix = _reachable_sums([weights[t] for t in order])
    if not suffix[0] >> target & 1:
        raise PatternError(f"no subset reaches {target}")
    chosen, remaining = [], target
    for pos, t in enumerate(order):
        take = keys[t] >= 0.5
        if take and (remaining < weights[t] or not suffix[pos + 1] >> (remaining - weights[t]) & 1):
            take = False
        elif not take and not suffix[pos + 1] >> remaining & 1:
            take = True
        if take:
            chosen.append(t)
            remaining -= weights[t]
    return sorted(chosen)


class FixedParams:
    """A trial double that answers a space's suggestions from given params."""

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def suggest_float(self, name: str, low: float, high: float) -> float:
        return float(self.params[name])

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.params[name]


@register_space
class OffsetsSpace(SearchSpace):
    """A translation-invariant offset set S containing 1: node i reads i - o for every o in S
    with o <= i (NEAREST-K is S = {1..K}, LOG is S = {1, 2, 4, ...}). One random key per offset;
    the set is decoded to meet the budget exactly. per_block: one set shared by the blocks,
    decoded per block to its share of the budget; v1: over the global layers; v2: inside each
    block, as the style applies any rule."""

    name = "offsets"

    def __init__(self, layers: Sequence[int], budget: int | None = None,
                 style: str = DEFAULT_STYLE):
        super().__init__(layers, budget, style)
        if self.network_style.rules_per_block:
            for L, b in zip(self.layers, self.block_budgets):
                # Offset o adds L+2-o edges; offsets 2..L add distinct 2..L, which reach every
                # total except 1 and (their sum - 1).
                rest, top = b - (L + 1), sum(range(2, L + 1))
                if rest in (1, top - 1) or not 0 <= rest <= top:
                    raise PatternError(f"search space 'offsets': no offset set has exactly {b} "
                                       f"connections at L={L} (try {b - 1} or {b + 1})")
            return
        # Each offset adds the same edges whatever else is in the set, so counts add up.
        base = self.network({1}).connections
        weights = {o: self.network({1, o}).connections - base for o in range(2, sum(layers) + 1)}
        self.offsets = [o for o, w in weights.items() if w > 0]
        self.base, self.weights = base, [weights[o] for o in self.offsets]
        reachable = _reachable_sums(self.weights)[0]
        if self.budget < base or not reachable >> (self.budget - base) & 1:
            near = [base + t for t in range(reachable.bit_length()) if reachable >> t & 1]
            below = max((c for c in near if c < self.budget), default=None)
            above = min((c for c in near if c > self.budget), default=None)
            raise PatternError(f"search space 'offsets': no offset set has exactly {self.budget} "
                               f"connections in {style} at layers {list(self.layers)} (nearest: "
                               f"{below} and {above})")

    def all_patterns(self) -> list[Pattern] | None:
        """One block, per_block: every offset set with exactly the budget (296 at L=16), where
        there are at most :data:`MAX_LISTED` (205,163 at L=32)."""
        if not self.network_style.rules_per_block or len(self.layers) != 1:
            return None
        L, target = self.layers[0], self.budget - (self.layers[0] + 1)
        if count_subsets(range(2, L + 1), target) > MAX_LISTED:  # offset o adds L+2-o
            return None
        found: list[Pattern] = []

        def extend(chosen: list[int], start: int, remaining: int) -> None:
            if remaining == 0:
                found.append(self.network({1, *chosen}))
            for o in range(start, L + 1):
                if L + 2 - o <= remaining:
                    extend([*chosen, o], o + 1, remaining - (L + 2 - o))

        extend([], 2, target)
        return found

    def params_of(self, pattern: Pattern) -> dict[str, Any] | None:
        """One block, per_block: key 1 for each offset of ``pattern``'s set, 0 for the others
        (equally confident keys that already meet the budget decode to themselves)."""
        if not self.network_style.rules_per_block or len(self.layers) != 1 or \
                pattern.num_layers != self.layers:
            return None
        block = pattern.blocks[0]
        offsets = {i - j for i in range(1, block.num_layers + 2) for j in block.reads(i)}
        params = {f"offset_{o}": float(o in offsets) for o in range(2, self.layers[0] + 1)}
        decoded = self.suggest(FixedParams(params))
        return params if decoded == pattern else None

    def network(self, offsets: set[int]) -> Pattern:
        """The network of an offset set: in each block, or over the global layers where the
        style's rules run network-wide (v1, v2)."""
        return assemble(self.layers, self.network_style,
                        lambda i: tuple(sorted(i - o for o in offsets if o <= i)))

    def suggest(self, trial: Trial) -> Pattern:
        if not self.network_style.rules_per_block:
            keys = [trial.suggest_float(f"offset_{o}", 0.0, 1.0) for o in self.offsets]
            picked = decode_subset(self.weights, keys, self.budget - self.base)
            return self.network({1, *(self.offsets[t] for t in picked)})
        by_offset = {o: trial.suggest_float(f"offset_{o}", 0.0, 1.0)
                     for o in range(2, max(self.layers) + 1)}
        return Pattern(offsets_block(L, b, by_offset)
                       for L, b in zip(self.layers, self.block_budgets))


def offsets_block(num_layers: int, budget: int, keys: dict[int, float]) -> Block:
    """The block whose offset set (1 plus keyed offsets) has exactly ``budget`` edges."""
    candidates = list(range(2, num_layers + 1))
    picked = decode_subset([num_layers + 2 - o for o in candidates],
                           [keys[o] for o in candidates], budget - (num_layers + 1))
    return offsets_pattern_block(num_layers, [1] + [candidates[t] for t in picked])


def offsets_pattern_block(num_layers: int, offsets: Collection[int]) -> Block:
    """The block in which node i reads i - o for every offset o <= i."""
    return Block(tuple(sorted(i - o for o in offsets if o <= i))
                 for i in range(1, num_layers + 2))


MAX_FREE_KEYS = 2500  # the free space's keys per trial: about a minute of SQLite writes


@register_space
class FreeSpace(SearchSpace):
    """Any input sets: one random key per possible edge (j < i), decoded to exactly each
    block's budget with every node reading >= 1 input and every layer read by a later node (so
    no layer is dead). v1: one global block, its head free too; v2: the context reads and the
    next context's reads are fixed, the edges between layers (and the last block's head) free."""

    name = "free"

    def __init__(self, layers: Sequence[int], budget: int | None = None,
                 style: str = DEFAULT_STYLE):
        super().__init__(layers, budget, style)
        keys = sum(len(self.fixed_edges(b, L)[1]) for b, L in enumerate(self.block_layers))
        if keys > MAX_FREE_KEYS:
            raise PatternError(
                f"search space 'free': {keys} keys at layers {list(self.layers)} ({style}), one "
                f"per possible connection, each a storage write per trial (about 40 a second "
                f"on SQLite); at most {MAX_FREE_KEYS}: use the 'offsets' space, or fewer layers")

    def suggest(self, trial: Trial) -> Pattern:
        blocks = []
        for b, (L, budget) in enumerate(zip(self.block_layers, self.block_budgets)):
            fixed, allowed = self.fixed_edges(b, L)
            keys = {e: trial.suggest_float(f"edge_{b}_{e[0]}_{e[1]}", 0.0, 1.0)
                    for e in allowed}
            blocks.append(free_block(L, budget, keys.__getitem__, fixed, allowed))
        return Pattern(blocks, self.style, self.layers)

    @property
    def block_layers(self) -> tuple[int, ...]:
        return self.network_style.block_layers(self.layers)

    def fixed_edges(self, b: int, num_layers: int) -> tuple[set[Edge], list[Edge]]:
        """(edges the style fixes, edges left to choose) in block ``b``."""
        fixed = self.network_style.fixed_edges(num_layers, b == len(self.block_layers) - 1)
        return fixed, [(j, i) for i in range(1, num_layers + 2) for j in range(i)
                       if (j, i) not in fixed]


def _cover_cost(need_out: set[int], need_in: set[int]) -> int:
    """Fewest edges j -> i (j < i) giving every node of need_out a reader and every node of
    need_in an input: one edge can serve a pair, so |out| + |in| - max matching."""
    matched = avail = p = 0
    outs = sorted(need_out)
    for i in sorted(need_in):
        while p < len(outs) and outs[p] < i:
            avail, p = avail + 1, p + 1
        if avail:
            avail, matched = avail - 1, matched + 1
    return len(need_out) + len(need_in) - matched


def free_block(num_layers: int, budget: int, key: Callable[[Edge], float],
               fixed: set[Edge] | None = None, allowed: Sequence[Edge] | None = None) -> Block:
    """Edges taken in key order (from ``allowed``, default every j < i, beside the ``fixed``
    ones) while the remaining budget can still cover every node's needs."""
    last = num_layers + 1
    fixed = fixed or set()
    if allowed is None:
        allowed = [(j, i) for i in range(1, last + 1) for j in range(i)]
    edges = sorted((e for e in allowed if e not in fixed), key=lambda e: -key(e))
    need_in = set(range(1, last + 1)) - {i for _, i in fixed}
    need_out = set(range(last)) - {j for j, _ in fixed}
    chosen: set[Edge] = set(fixed)
    remaining = budget - len(fixed)
    # Each pass takes >= 1 edge: with budget to spare any unused edge fits, and with none to
    # spare an edge joining a node that needs a reader to one that needs an input does.
    while remaining:
        for e in edges:
            if remaining == 0:
                break
            if e in chosen:
                continue
            ins, outs = need_in - {e[1]}, need_out - {e[0]}
            if remaining - 1 >= _cover_cost(outs, ins):
                chosen.add(e)
                need_in, need_out, remaining = ins, outs, remaining - 1
    return Block(tuple(sorted(j for j, t in chosen if t == i)) for i in range(1, last + 1))


class RandomKeys:
    """A trial double that answers every suggestion at random (numpy), remembering the
    answers: the params that make :meth:`SearchSpace.suggest` give the same pattern again."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.params: dict[str, Any] = {}

    def suggest_float(self, name: str, low: float, high: float) -> float:
        return self.params.setdefault(name, float(self.rng.uniform(low, high)))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.params.setdefault(name, choices[int(self.rng.integers(len(choices)))])


def sample_patterns(space: SearchSpace, count: int, seed: int = 0,
                    exact: bool = True) -> list[Pattern]:
    """``count`` distinct patterns drawn uniformly over the space's params (seeded); with
    ``exact=False``, as many as ``50 * count`` draws find when that is fewer."""
    rng = np.random.default_rng(seed)
    found: dict[str, Pattern] = {}
    for _ in range(50 * count):
        pattern = space.suggest(RandomKeys(rng))
        found.setdefault(pattern.hash, pattern)
        if len(found) == count:
            return list(found.values())
    if not exact:
        return list(found.values())
    raise PatternError(f"search space {space.name!r}: only {len(found)} distinct patterns in "
                       f"{50 * count} draws, fewer than the {count} asked for")
