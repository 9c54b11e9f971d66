"""Search spaces: objects whose ``suggest(trial)`` returns a valid pattern with exactly the
connection budget, using only ``trial.suggest_*`` (duck-typed: Optuna's Trial, or a test double).

Spaces with many binary choices use random keys: one float in [0, 1] per choice, decoded
deterministically into a feasible pattern (confident keys first, each decision kept only while
the budget stays reachable). Every sample is valid by construction; nothing is rejected and
resampled, and continuous samplers (TPE, CMA-ES) apply.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

from .pattern import Block, Pattern, PatternError
from .registry import Registry
from .templates import TEMPLATES, budgeted_block, template_pattern


class Trial(Protocol):
    def suggest_float(self, name: str, low: float, high: float) -> float: ...
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class SearchSpace:
    """A budgeted space over patterns with the given layers per block."""

    name: ClassVar[str]

    def __init__(self, layers: Sequence[int], budget: int | None = None):
        self.layers = tuple(int(L) for L in layers)
        if not self.layers or min(self.layers) < 1:
            raise PatternError(f"search space {self.name!r}: layers must be positive, "
                               f"got {list(layers)}")
        log_counts = [b.connections for b in template_pattern("log", self.layers).blocks]
        self.budget = sum(log_counts) if budget is None else int(budget)
        low = sum(L + 1 for L in self.layers)
        high = sum((L + 1) * (L + 2) // 2 for L in self.layers)
        if not low <= self.budget <= high:
            raise PatternError(f"search space {self.name!r}: budget {self.budget} impossible for "
                               f"layers {list(self.layers)} (must be in {low}..{high})")
        self.block_budgets = split_budget(self.budget, log_counts, self.layers)

    def suggest(self, trial: Trial) -> Pattern:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"space": self.name, "layers": list(self.layers), "budget": self.budget}


def split_budget(budget: int, weights: Sequence[int], layers: Sequence[int]) -> list[int]:
    """Split a network budget over blocks in proportion to ``weights`` (log's counts, so the
    default budget gives every block log's count), kept within each block's feasible range;
    the caller guarantees the total is feasible."""
    lows = [L + 1 for L in layers]
    highs = [(L + 1) * (L + 2) // 2 for L in layers]
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


SEARCH_SPACES: Registry[type[SearchSpace]] = Registry("search space", PatternError)


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    return SEARCH_SPACES.add(cls.name, cls)


def make_space(name: str, layers: Sequence[int], budget: int | None = None,
               **kwargs: Any) -> SearchSpace:
    """The registered space ``name`` at these layers and budget."""
    return SEARCH_SPACES[name](layers, budget, **kwargs)


@register_space
class TemplatesSpace(SearchSpace):
    """Choose one of the paper's templates that can meet the budget exactly (K-templates always
    can, with a fractional K; K-free templates only at their own count)."""

    name = "templates"

    def __init__(self, layers: Sequence[int], budget: int | None = None,
                 templates: Sequence[str] | None = None):
        super().__init__(layers, budget)
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
        return Pattern(budgeted_block(name, L, b) for L, b in zip(self.layers, self.block_budgets))

    def suggest(self, trial: Trial) -> Pattern:
        return self.pattern(trial.suggest_categorical("template", self.templates))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "templates": self.templates}


def _reachable_sums(weights: Sequence[int]) -> list[int]:
    """suffix[t]: bitset of the sums reachable with distinct items weights[t:]."""
    suffix = [1] * (len(weights) + 1)
    for t in range(len(weights) - 1, -1, -1):
        suffix[t] = suffix[t + 1] | (suffix[t + 1] << weights[t])
    return suffix


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


@register_space
class OffsetsSpace(SearchSpace):
    """A translation-invariant offset set S containing 1: node i reads i - o for every o in S
    with o <= i (NEAREST-K is S = {1..K}, LOG is S = {1, 2, 4, ...}). One random key per offset,
    shared by all blocks; the set is decoded to meet each block's budget exactly."""

    name = "offsets"

    def __init__(self, layers: Sequence[int], budget: int | None = None):
        super().__init__(layers, budget)
        for L, b in zip(self.layers, self.block_budgets):
            # Offset o adds L+2-o edges; offsets 2..L add distinct 2..L, which reach every
            # total except 1 and (their sum - 1).
            rest, top = b - (L + 1), sum(range(2, L + 1))
            if rest in (1, top - 1) or not 0 <= rest <= top:
                raise PatternError(f"search space 'offsets': no offset set has exactly {b} "
                                   f"connections at L={L} (try {b - 1} or {b + 1})")

    def suggest(self, trial: Trial) -> Pattern:
        keys = {o: trial.suggest_float(f"offset_{o}", 0.0, 1.0)
                for o in range(2, max(self.layers) + 1)}
        return Pattern(offsets_block(L, b, keys) for L, b in zip(self.layers, self.block_budgets))


def offsets_block(num_layers: int, budget: int, keys: dict[int, float]) -> Block:
    """The block whose offset set (1 plus keyed offsets) has exactly ``budget`` edges."""
    candidates = list(range(2, num_layers + 1))
    picked = decode_subset([num_layers + 2 - o for o in candidates],
                           [keys[o] for o in candidates], budget - (num_layers + 1))
    offsets = [1] + [candidates[t] for t in picked]
    return Block(tuple(sorted(i - o for o in offsets if o <= i))
                 for i in range(1, num_layers + 2))


@register_space
class FreeSpace(SearchSpace):
    """Any per-node input sets: one random key per possible edge (j < i) of every block, decoded
    to exactly the block budget with every node reading >= 1 input and every layer read by a
    later node (so no layer is dead)."""

    name = "free"

    def suggest(self, trial: Trial) -> Pattern:
        blocks = []
        for b, (L, budget) in enumerate(zip(self.layers, self.block_budgets)):
            keys = {(j, i): trial.suggest_float(f"edge_{b}_{j}_{i}", 0.0, 1.0)
                    for i in range(1, L + 2) for j in range(i)}
            blocks.append(free_block(L, budget, keys.__getitem__))
        return Pattern(blocks)


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


def free_block(num_layers: int, budget: int, key: Callable[[tuple[int, int]], float]) -> Block:
    """Edges taken in key order while the remaining budget can still cover every node's needs."""
    last = num_layers + 1
    edges = sorted(((j, i) for i in range(1, last + 1) for j in range(i)), key=lambda e: -key(e))
    need_in, need_out = set(range(1, last + 1)), set(range(last))
    chosen: set[tuple[int, int]] = set()
    remaining = budget
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
