"""A pattern at other depths. A pattern made by a rule (a template; an offset set, as the
`offsets` space draws) is the rule applied at its layers, so it has a form at any layers: the
same rule applied there. The rule is found from the pattern itself (hints from a spec's origin
are tried first), so patterns a search found are re-derived as well as named templates. A free
pattern, whose every connection was chosen on its own, follows no rule: it has no other depth.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

from .pattern import Pattern, PatternError
from .spaces import offsets_pattern_block
from .styles import DEFAULT_STYLE, STYLES
from .templates import BLOCK_OUTPUTS, TEMPLATES, assemble, budgeted_pattern, template_pattern


class Derivation(ABC):
    """A rule that gives a pattern at any layers (one number per stage, as `Pattern.stages`)."""

    @abstractmethod
    def at(self, layers: Sequence[int]) -> Pattern:
        """The pattern of this rule at ``layers``; PatternError where it has none."""

    @abstractmethod
    def describe(self) -> str:
        """The rule in a few words."""


@dataclass(frozen=True)
class TemplateDerivation(Derivation):
    """A template in a style and block output convention: at K inputs (None: the authors'
    default K at each depth), or with ``budget`` at that fraction of log's connection count
    (a fractional K, as the `templates` space and exact-budget baselines build it)."""

    name: str
    style: str = DEFAULT_STYLE
    output: str = "template"
    k: int | None = None
    budget: Fraction | None = None

    def at(self, layers: Sequence[int]) -> Pattern:
        if self.budget is None:
            return template_pattern(self.name, layers, self.k, self.style, self.output)
        log = template_pattern("log", layers, style=self.style, output=self.output)
        return budgeted_pattern(self.name, layers, round(self.budget * log.connections),
                                self.style, self.output)

    def describe(self) -> str:
        k = "" if self.k is None else f" K={self.k}"
        budget = "" if self.budget is None else " at log's connection count" \
            if self.budget == 1 else f" at {float(self.budget):.4g} x log's connection count"
        output = "" if self.output == "template" else f", block output {self.output}"
        return f"template {self.name}{k}{budget} ({self.style}{output})"


@dataclass(frozen=True)
class OffsetsDerivation(Derivation):
    """Node i reads i - o for every offset o <= i: per_block one offset set per block (one
    shared set applies at any number of blocks), network-wide styles one set over the global
    layers."""

    style: str
    offsets: tuple[tuple[int, ...], ...]

    def at(self, layers: Sequence[int]) -> Pattern:
        network_style = STYLES[self.style]
        if not network_style.rules_per_block:
            [offsets] = self.offsets
            return assemble(layers, network_style,
                            lambda i: tuple(sorted(i - o for o in offsets if o <= i)))
        sets = self.offsets
        if len(set(sets)) == 1:
            sets = sets[:1] * len(layers)
        if len(sets) != len(layers):
            raise PatternError(f"the pattern's blocks read different offsets ("
                               f"{'; '.join(map(_listed, sets))}): re-derive it at "
                               f"{len(sets)} blocks, not {len(layers)}")
        return Pattern(offsets_pattern_block(L, s) for L, s in zip(layers, sets))

    def describe(self) -> str:
        sets = dict.fromkeys(self.offsets)  # a set every block shares, once
        return f"offsets {' / '.join(map(_listed, sets))} ({self.style})"


def _listed(offsets: Sequence[int]) -> str:
    return "{" + ", ".join(map(str, offsets)) + "}"


def derivation_of(pattern: Pattern, template: str | None = None,
                  k: int | None = None) -> Derivation | None:
    """The rule that gives ``pattern`` at its own layers, or None (a free pattern). Tried in
    order: ``template`` (at ``k``) when named, each template at its default K, at log's
    connection count, at another K, at its own fraction of log's count, then an offset set."""
    return next((d for d in _candidates(pattern, template, k) if _gives(d, pattern)), None)


def at_depth(pattern: Pattern, layers: Sequence[int], template: str | None = None,
             k: int | None = None) -> tuple[Pattern, Derivation | None]:
    """``pattern`` re-derived at ``layers`` by its rule, and the rule (None: the layers are its
    own, nothing to derive). A free pattern is refused, in one line saying why."""
    layers = tuple(int(L) for L in layers)
    if layers == pattern.stages:
        return pattern, None
    rule = derivation_of(pattern, template, k)
    if rule is None:
        raise PatternError(f"pattern {pattern.hash} follows no template or offset rule (each "
                           f"connection was chosen on its own), so it has no form at layers "
                           f"{list(layers)}: keep its layers {list(pattern.stages)}")
    return rule.at(layers), rule


def _gives(rule: Derivation, pattern: Pattern) -> bool:
    try:
        return rule.at(pattern.stages) == pattern
    except PatternError:  # the rule has no pattern at these layers: not this pattern's rule
        return False


def _candidates(pattern: Pattern, template: str | None, k: int | None) -> Iterator[Derivation]:
    style, layers = pattern.style, pattern.stages
    hinted = template if template is not None and template in TEMPLATES else None
    names = [n for n in TEMPLATES if n == hinted] + [n for n in TEMPLATES if n != hinted]
    with_k = [n for n in names if TEMPLATES[n].uses_k]
    outputs = list(BLOCK_OUTPUTS)
    if hinted is not None and k is not None:
        yield from (TemplateDerivation(hinted, style, o, k) for o in outputs)
    yield from (TemplateDerivation(n, style, o) for n in names for o in outputs)
    yield from (TemplateDerivation(n, style, o, budget=Fraction(1)) for n in with_k
                for o in outputs)
    # K is at least the widest row the rule gives; the rows of a style's fixed reads (v2's
    # context, a block output reading all) are a little wider: a few K around each width.
    widths = {len(row) for block in pattern.blocks for row in block.inputs}
    ks = sorted({w + d for w in widths for d in (-1, 0, 1)
                 if 1 <= w + d <= max(STYLES[style].rule_layers(layers))})
    yield from (TemplateDerivation(n, style, o, K) for n in with_k for K in ks for o in outputs)
    for o in outputs:
        log = template_pattern("log", layers, style=style, output=o).connections
        yield from (TemplateDerivation(n, style, o, budget=Fraction(pattern.connections, log))
                    for n in with_k)
    yield OffsetsDerivation(style, _offsets(pattern))


def _offsets(pattern: Pattern) -> tuple[tuple[int, ...], ...]:
    """The offsets i - j at which the pattern's nodes read, apart from the reads its style fixes
    (v2's context): per block, or in a network-wide style one set over its layers (whose heads
    read what the style gives them)."""
    network_style = STYLES[pattern.style]
    sets = []
    for b, block in enumerate(pattern.blocks):
        fixed = network_style.fixed_edges(block.num_layers, b == len(pattern.blocks) - 1)
        rows = block.inputs[:-1] if not network_style.rules_per_block else block.inputs
        sets.append({i - j for i, row in enumerate(rows, start=1) for j in row
                     if (j, i) not in fixed})
    if not network_style.rules_per_block:
        return (tuple(sorted({1}.union(*sets))),)
    return tuple(tuple(sorted(s)) for s in sets)
