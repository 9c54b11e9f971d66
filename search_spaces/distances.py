"""Backprop distances of a pattern, over the whole network with its blocks chained.

The backprop distance d(j, i), j < i, is the number of edges on the shortest forward path from
node j to node i: the fewest layers a gradient from node i crosses to reach node j. Pairs with no
path (possible in free patterns) have no distance; they are counted, not averaged in.

What counts as a hop follows the network style (see `pattern`):

- ``per_block``: a block's output node (its transition) is a node, and it is the next block's
  input node: leaving a block costs the hop into its output node.
- ``v1``: the nodes are the stem, the layers and the head; per-source transitions are not
  nodes, so a link across blocks is one edge and LOG's d(j, i) = popcount(i - j) holds over the
  whole network.
- ``v2``: each context C_b is a node (block b's node 0, block b-1's output node), read by every
  layer of its block, and C_{b+1} reads every node of block b: from a layer of block b to a
  layer of block b' > b is b' - b + 1 edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pattern import Pattern

UNREACHABLE = -1


def global_inputs(pattern: Pattern) -> list[np.ndarray]:
    """For every node of the chained network (global numbering), the global nodes it reads.

    Block b's node n is global node ``offset_b + n``; its output node is block b+1's input node.
    """
    reads: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    offset = 0
    for block in pattern.blocks:
        for row in block.inputs:
            reads.append(offset + np.asarray(row, dtype=np.int64))
        offset += block.num_layers + 1
    return reads


def distance_matrix(pattern: Pattern) -> np.ndarray:
    """N x N int matrix: ``D[j, i]`` = shortest path length j -> i, 0 on the diagonal,
    ``UNREACHABLE`` (-1) where there is no path (always so for j > i)."""
    reads = global_inputs(pattern)
    n = len(reads)
    big = np.iinfo(np.int32).max // 2
    d = np.full((n, n), big, dtype=np.int32)
    np.fill_diagonal(d, 0)
    # Node indices are a topological order, so one sweep settles every column (DP over the DAG,
    # vectorised over all source nodes at once).
    for i in range(1, n):
        col = d[:, reads[i]].min(axis=1) + 1
        col[i] = 0
        d[:, i] = np.minimum(col, big)
    d[d >= big] = UNREACHABLE
    return d


@dataclass(frozen=True)
class DistanceStats:
    """Summary of the backprop distances over all pairs j < i that have a path."""

    mbd: int                 # maximum backprop distance
    mean: float              # mean distance over connected pairs
    histogram: tuple[int, ...]  # histogram[d] = number of connected pairs at distance d (d >= 1)
    pairs: int               # connected pairs
    unreachable_pairs: int   # pairs j < i with no path

    def to_dict(self) -> dict:
        return {"mbd": self.mbd, "mean_distance": self.mean, "histogram": list(self.histogram),
                "pairs": self.pairs, "unreachable_pairs": self.unreachable_pairs}


def distance_stats(pattern: Pattern) -> DistanceStats:
    """MBD, mean distance and histogram of the pattern's backprop distances."""
    d = distance_matrix(pattern)
    upper = d[np.triu_indices(d.shape[0], k=1)]
    reachable = upper[upper != UNREACHABLE]
    hist = np.bincount(reachable, minlength=2)
    hist[0] = 0
    return DistanceStats(mbd=int(reachable.max()), mean=float(reachable.mean()),
                         histogram=tuple(int(c) for c in hist), pairs=int(reachable.size),
                         unreachable_pairs=int(upper.size - reachable.size))
