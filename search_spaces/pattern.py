"""Connection patterns: which earlier nodes every node of every block reads.

A block of L layers has nodes 0..L+1: node 0 is the block input, nodes 1..L are its layers and
node L+1 is the block output (the transition, or the head for the last block). For each node
i = 1..L+1 a block lists the sorted earlier nodes it reads. A pattern is an ordered tuple of blocks;
block b's output node is block b+1's input node.

A pattern also has a network style, which says what its nodes are (see :data:`STYLES`, one
:class:`~search_spaces.styles.Style` object each):

- ``per_block``: each block's node 0 is the previous block's transition (or the stem), node L+1
  its transition (a DenseNet transition over what it reads) or the head.
- ``v1`` (Log-DenseNet V1, network-wide): one block holds the whole network's layers in global
  order, node 0 being the stem; ``stages`` says how many layers run at each resolution. A layer
  that reads a layer of an earlier stage gets that source through its own per-source
  transitions, so the link is one edge. Node N+1 is the head.
- ``v2`` (Log-DenseNet V2, block compression): like per_block, but node 0 of block b is the
  compressed context C_b, which every layer of the block reads, and node L+1 of a block that is
  not the last is C_{b+1}, which reads C_b and every layer of the block.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .errors import PatternError
from .styles import DEFAULT_STYLE, STYLES

MAX_LAYERS = 2000  # per network: distances are an N x N matrix, search spaces grow as N^2


def check_size(total_layers: int) -> None:
    if total_layers > MAX_LAYERS:
        raise PatternError(f"{total_layers} layers: skipnas handles at most {MAX_LAYERS} per "
                           f"network")


@dataclass(frozen=True)
class Block:
    """One dense block: ``inputs[i - 1]`` is the sorted tuple of nodes that node ``i`` reads."""

    inputs: tuple[tuple[int, ...], ...]

    def __init__(self, inputs: Iterable[Iterable[int]]):
        object.__setattr__(self, "inputs", tuple(tuple(int(j) for j in row) for row in inputs))
        self._validate()

    @property
    def num_layers(self) -> int:
        return len(self.inputs) - 1

    @property
    def connections(self) -> int:
        return sum(len(row) for row in self.inputs)

    def reads(self, node: int) -> tuple[int, ...]:
        """The nodes that ``node`` (1..L+1) reads."""
        return self.inputs[node - 1]

    def edges(self) -> list[tuple[int, int]]:
        """All (source, target) pairs, targets ascending."""
        return [(j, i) for i, row in enumerate(self.inputs, start=1) for j in row]

    def adjacency(self):
        """(L+2) x (L+2) 0/1 numpy matrix, ``A[j, i] = 1`` when node i reads node j."""
        a = np.zeros((self.num_layers + 2, self.num_layers + 2), dtype=np.int8)
        for j, i in self.edges():
            a[j, i] = 1
        return a

    def _validate(self) -> None:
        if len(self.inputs) < 2:
            raise PatternError("a block needs at least 1 layer (inputs for nodes 1..L+1)")
        for i, row in enumerate(self.inputs, start=1):
            if not row:
                raise PatternError(f"node {i} reads nothing (every node needs at least one input)")
            if list(row) != sorted(set(row)):
                problem = "duplicate" if len(set(row)) != len(row) else "unsorted"
                raise PatternError(f"node {i} has {problem} inputs {list(row)}")
            if row[0] < 0 or row[-1] >= i:
                raise PatternError(f"node {i} reads node {row[-1] if row[-1] >= i else row[0]}: "
                                   f"inputs must be earlier nodes 0..{i - 1}")
        # Every layer must feed the block output, else its work (and its edges) are dead weight.
        last = self.num_layers + 1
        useful = {last}
        for i in range(last, 0, -1):
            if i in useful:
                useful.update(self.inputs[i - 1])
        dead = [i for i in range(1, last) if i not in useful]
        if dead:
            raise PatternError(f"layer {dead[0]} is unreachable from the block output "
                               f"(no path to node {last}); dead layers: {dead}")


@dataclass(frozen=True)
class Pattern:
    """A whole network's connections: an ordered tuple of blocks in a network style.

    ``stages`` is the number of layers at each resolution: the blocks' layers, except in ``v1``
    where the one block's layers are split into stages by it."""

    blocks: tuple[Block, ...]
    style: str = DEFAULT_STYLE
    stages: tuple[int, ...] = ()

    def __init__(self, blocks: Iterable[Block], style: str = DEFAULT_STYLE,
                 stages: Iterable[int] | None = None):
        blocks = tuple(blocks)
        if not blocks:
            raise PatternError("a pattern needs at least one block")
        if not all(isinstance(b, Block) for b in blocks):
            raise PatternError("blocks must be Block instances")
        network_style = STYLES[style]  # unknown: PatternError naming the known styles
        own = tuple(b.num_layers for b in blocks)
        check_size(sum(own))
        stages = own if stages is None else tuple(int(s) for s in stages)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "style", style)
        object.__setattr__(self, "stages", stages)
        network_style.validate(blocks, stages)

    @property
    def num_layers(self) -> tuple[int, ...]:
        return tuple(b.num_layers for b in self.blocks)

    @property
    def connections(self) -> int:
        return sum(b.connections for b in self.blocks)

    @property
    def num_nodes(self) -> int:
        """Nodes of the chained network: one input plus L+1 per block."""
        return 1 + sum(b.num_layers + 1 for b in self.blocks)

    def to_dict(self) -> dict[str, Any]:
        """Plain form: the blocks, then the style's fields (see :meth:`Style.fields`; none for
        per_block, so its patterns keep the hashes they had before styles existed)."""
        blocks = [{"num_layers": b.num_layers, "inputs": [list(r) for r in b.inputs]}
                  for b in self.blocks]
        return {"blocks": blocks, **STYLES[self.style].fields(self.stages)}

    @classmethod
    def from_dict(cls, data: Any) -> "Pattern":
        """Inverse of :meth:`to_dict`; raises :class:`PatternError` naming the bad field."""
        if not isinstance(data, dict) or not isinstance(data.get("blocks"), list):
            raise PatternError("pattern: expected an object with a 'blocks' list")
        unknown = sorted(set(data) - {"blocks", "style", "stages"})
        if unknown:
            raise PatternError(f"pattern: unknown field {unknown[0]!r}")
        style, stages = data.get("style", DEFAULT_STYLE), data.get("stages")
        if style not in STYLES:
            raise PatternError(f"style: {STYLES.unknown(style)}")
        if stages is not None and not (isinstance(stages, list) and all(
                isinstance(s, int) and not isinstance(s, bool) for s in stages)):
            raise PatternError(f"stages: expected a list of integers, got {stages!r}")
        blocks = []
        for b, raw in enumerate(data["blocks"]):
            where = f"blocks[{b}]"
            if not isinstance(raw, dict):
                raise PatternError(f"{where}: expected an object")
            inputs, n = raw.get("inputs"), raw.get("num_layers")
            if not isinstance(inputs, list) or not all(
                    isinstance(r, list) and all(isinstance(j, int) and not isinstance(j, bool)
                                                for j in r) for r in inputs):
                raise PatternError(f"{where}.inputs: expected a list of lists of integers")
            if not isinstance(n, int) or isinstance(n, bool) or n != len(inputs) - 1:
                raise PatternError(f"{where}.num_layers: {n!r} does not match "
                                   f"{len(inputs)} input lists (expected {len(inputs) - 1})")
            try:
                blocks.append(Block(inputs))
            except PatternError as e:
                raise PatternError(f"{where}.inputs: {e}") from None
        return cls(blocks, style, stages)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Pattern":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PatternError(f"pattern: not valid JSON ({e})") from None
        return cls.from_dict(data)

    @cached_property  # the fields are frozen; samplers ask for it thousands of times a trial
    def hash(self) -> str:
        """Canonical hash (sha256 of the canonical JSON, 16 hex digits), stable across processes."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def single_block(inputs: Sequence[Sequence[int]]) -> Pattern:
    """A one-block pattern from its input lists."""
    return Pattern([Block(inputs)])
