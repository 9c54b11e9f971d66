"""Network styles: one registered :class:`Style` object per style (:data:`STYLES`), carrying
all that the pure package does differently in it: which patterns are valid, what a pattern's
plain form records, which layer counts a rule sees, each block's connection range, the edges every
block has, and how a network-wide rule's rows become blocks. What a pattern's nodes are in each
style is described in `pattern`; each style's torch body is registered under its name in
`nas.engine.model` (``BODIES``), so a new style is a :class:`Style` here and a body there.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .errors import PatternError
from .registry import Registry

if TYPE_CHECKING:
    from .pattern import Block

Row = tuple[int, ...]   # the sorted nodes one node reads
Edge = tuple[int, int]  # (source, target) inside a block


def dense_connections(num_layers: int) -> int:
    """Connections of a dense block: each of its L layers and its output node read every
    earlier node."""
    return (num_layers + 1) * (num_layers + 2) // 2


@dataclass(frozen=True)
class Style:
    """A network style: its name, a line on what its nodes are, and its behaviour (by default,
    that of a style whose blocks are its stages and whose rules run inside each block)."""

    name: str
    doc: str
    # Left out of a pattern's plain form and a space's description: per_block predates styles,
    # and its stored patterns and studies keep their hashes.
    implicit: ClassVar[bool] = False
    # A rule (a template's, an offset set) runs inside each block, on the block's budget;
    # else once over the network's global layers 1..N, its rows split into the blocks.
    rules_per_block: ClassVar[bool] = True

    def validate(self, blocks: Sequence[Block], stages: tuple[int, ...]) -> None:
        """Raise :class:`PatternError` unless ``blocks`` at ``stages`` are a network in it."""
        own = [b.num_layers for b in blocks]
        if list(stages) != own:
            raise PatternError(f"stages {list(stages)}: only style 'v1' splits a block "
                               f"into stages; here they are the blocks' layers {own}")

    def fields(self, stages: tuple[int, ...]) -> dict[str, Any]:
        """What a pattern's plain form holds besides its blocks."""
        return {} if self.implicit else {"style": self.name}

    def rule_layers(self, layers: Sequence[int]) -> list[int]:
        """The layer counts a rule sees (a default K each), for ``layers`` per stage."""
        return [seen for seen, _ in self.runs(layers)]

    def runs(self, layers: Sequence[int]) -> list[tuple[int, int]]:
        """Each run of a rule for ``layers`` per stage: (the layers it sees, the nodes 1..n it
        gives rows for); in each block its layers and its output node."""
        return [(L, L + 1) for L in layers]

    def split(self, layers: Sequence[int], runs: Sequence[Sequence[Row]]) -> list[list[Row]]:
        """Each block's input rows from the rows of each of :meth:`runs`."""
        return [list(rows) for rows in runs]

    def block_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        """The layers of each block of a pattern with ``layers`` per stage."""
        return tuple(layers)

    def ranges(self, layers: Sequence[int]) -> list[tuple[int, int]]:
        """(fewest, most) connections of each block with every node fed and every layer reaching
        the output: a chain, dense."""
        return [(L + 1, dense_connections(L)) for L in self.block_layers(layers)]

    def fixed_edges(self, num_layers: int, last: bool) -> set[Edge]:
        """The edges every block of ``num_layers`` layers has (``last``: the network's last)."""
        return set()


class PerBlockStyle(Style):
    """``per_block``: DenseNet's blocks and transitions; a rule runs inside each block."""

    implicit = True


class NetworkWideStyle(Style, ABC):
    """A style whose rules run over the network's global layers 1..N, then are split into its
    blocks by :meth:`blocks`."""

    rules_per_block = False

    def runs(self, layers: Sequence[int]) -> list[tuple[int, int]]:
        return [(sum(layers), sum(layers))]

    def split(self, layers: Sequence[int], runs: Sequence[Sequence[Row]]) -> list[list[Row]]:
        (rows,) = runs
        return self.blocks(layers, rows)

    @abstractmethod
    def blocks(self, layers: Sequence[int], rows: Sequence[Row]) -> list[list[Row]]:
        """Each block's input rows in the network whose global layer i reads ``rows[i - 1]``."""


class V1Style(NetworkWideStyle):
    """``v1`` (Log-DenseNet V1): one block over the network's layers in global order, split by
    resolution into ``stages``."""

    def validate(self, blocks: Sequence[Block], stages: tuple[int, ...]) -> None:
        if len(blocks) != 1:
            raise PatternError(f"style {self.name!r} has one block: the whole network in global "
                               f"order")
        n = blocks[0].num_layers
        if not stages or min(stages) < 1 or sum(stages) != n:
            raise PatternError(f"stages {list(stages)} must be positive and add up to "
                               f"the {n} layers of the network")

    def fields(self, stages: tuple[int, ...]) -> dict[str, Any]:
        return {**super().fields(stages), "stages": list(stages)}

    def block_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        return (sum(layers),)

    def blocks(self, layers: Sequence[int], rows: Sequence[Row]) -> list[list[Row]]:
        # The head reads what layer N reads and layer N: the authors' classifier reads the last
        # layer's input concatenation and its output.
        return [[*rows, tuple(sorted({*rows[-1], len(rows)}))]]


class V2Style(NetworkWideStyle):
    """``v2`` (Log-DenseNet V2): every layer reads its block's context (node 0), and the next
    context (node L+1 of a block but the last) reads every node of the block."""

    def validate(self, blocks: Sequence[Block], stages: tuple[int, ...]) -> None:
        super().validate(blocks, stages)
        for b, block in enumerate(blocks):
            last = block.num_layers + 1
            for i in range(1, last):
                if 0 not in block.reads(i):
                    raise PatternError(f"block {b} node {i}: in style {self.name!r} every layer "
                                       f"reads the context (node 0)")
            if b < len(blocks) - 1 and block.reads(last) != tuple(range(last)):
                raise PatternError(f"block {b} node {last}: in style {self.name!r} the next "
                                   f"context reads every node 0..{last - 1}")

    def ranges(self, layers: Sequence[int]) -> list[tuple[int, int]]:
        # The context reads (L) and the next context's reads (L+1) are fixed; in the last block
        # each layer needs a reader on its way to the head.
        last = len(layers) - 1
        return [(L + (L if b == last else L + 1), L * (L - 1) // 2 + L + L + 1)
                for b, L in enumerate(layers)]

    def fixed_edges(self, num_layers: int, last: bool) -> set[Edge]:
        out = num_layers + 1
        context = {(0, i) for i in range(1, out)}
        return context if last else context | {(j, out) for j in range(out)}

    def blocks(self, layers: Sequence[int], rows: Sequence[Row]) -> list[list[Row]]:
        # Only the sources inside a layer's own block are kept (the authors' `special_filter`
        # drops x_0 and earlier blocks); the last block's head reads what its last layer reads
        # and that layer.
        blocks, offset = [], 0
        for b, L in enumerate(layers):
            local = [(0, *(j - offset for j in rows[offset + pos - 1] if j > offset))
                     for pos in range(1, L + 1)]
            out = tuple(sorted({*local[-1], L})) if b == len(layers) - 1 else tuple(range(L + 1))
            blocks.append([*local, out])
            offset += L
        return blocks


STYLES: Registry[Style] = Registry("style", PatternError)
DEFAULT_STYLE = "per_block"  # the style of a pattern or space that names none
S = TypeVar("S", bound=Style)


def _register(style: S) -> S:
    STYLES.add(style.name, style)
    return style


PER_BLOCK = _register(PerBlockStyle(
    DEFAULT_STYLE, "each block's output node is a DenseNet transition into the next"))
V1 = _register(V1Style(
    "v1", "one global block over the network's layers, per-source transitions"))
V2 = _register(V2Style(
    "v2", "each block reads a compressed context, the next context reads the block"))
