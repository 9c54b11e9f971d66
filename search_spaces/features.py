"""Zero-cost graph statistics of a pattern: what guided search scores and learns from, with no
training (each score oriented so that a higher score is the principle's prediction of a better
network), and the same statistics named for people (:class:`PatternFeatures`, raw)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .distances import DistanceStats, distance_stats
from .pattern import Pattern, PatternError
from .registry import Registry


def _distance_shares(stats: DistanceStats) -> list[float]:
    """Shares of the connected pairs at distance 1, 2, 3 and >= 4."""
    hist = np.asarray(stats.histogram[1:], dtype=float) / max(1, stats.pairs)
    hist = np.pad(hist, (0, max(0, 3 - len(hist))))
    return [*hist[:3], float(hist[3:].sum())]


def reads_of_input(pattern: Pattern) -> int:
    """How many nodes read their block's input (node 0), over every block; a block's output
    node (L + 1) counts when it reads it."""
    return sum(sum(0 in block.reads(i) for i in range(1, block.num_layers + 2))
               for block in pattern.blocks)


MEAN_DISTANCE = 0  # the column of the mean backprop distance in :func:`features`


def features(pattern: Pattern) -> np.ndarray:
    """The feature vector a learned sampler sees: mean distance, MBD, the share of pairs at
    distance 1, 2, 3 and >= 4, how many nodes read each block's input (node 0), and the mean
    in-degree of the first, middle and last third of the layers."""
    f = pattern_features(pattern)
    degrees = np.concatenate([[len(block.reads(i)) for i in range(1, block.num_layers + 1)]
                              for block in pattern.blocks]).astype(float)
    thirds = [part.mean() if part.size else 0.0 for part in np.array_split(degrees, 3)]
    return np.array([f.mean_distance, f.mbd, f.at_distance_1, f.at_distance_2, f.at_distance_3,
                     f.at_distance_4_plus, f.reads_of_node0, *thirds])


Score = Callable[[Pattern], float]

# Zero-cost scores, higher is predicted better, each named as exactly what it computes: a name
# "-X" is the quantity X negated (-mean_distance: minus the mean backprop distance).
SCORES: Registry[Score] = Registry("zero-cost score", PatternError)
SCORES.add("-mean_distance", lambda p: -distance_stats(p).mean)
SCORES.add("-mbd", lambda p: -float(distance_stats(p).mbd))
# The share of pairs at distance <= 2.
SCORES.add("short_pairs", lambda p: float(sum(_distance_shares(distance_stats(p))[:2])))
SCORES.add("reads_of_node0", lambda p: float(reads_of_input(p)))


def screen_score(name: str) -> Score:
    """A score to maximise by name: any registered one, or "-X" for a registered X negated
    (-reads_of_node0: the fewer nodes read the block input, the better)."""
    if name in SCORES:
        return SCORES[name]
    if name.startswith("-") and not name.startswith("--") and name[1:] in SCORES:
        score = SCORES[name[1:]]
        return lambda p: -score(p)
    raise PatternError(f"unknown screen score {name!r}; known: {', '.join(SCORES)}, or any of "
                       f"them negated by a leading '-'")


@dataclass(frozen=True)
class PatternFeatures:
    """What tells patterns at one budget apart, named for people (importances, slices, the
    dashboard): backprop distances (mean, MBD, the share of connected pairs at each distance)
    and how many nodes read their block's input (node 0)."""
    mean_distance: float
    mbd: int
    reads_of_node0: int
    at_distance_1: float
    at_distance_2: float
    at_distance_3: float
    at_distance_4_plus: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def pattern_features(pattern: Pattern) -> PatternFeatures:
    """The :class:`PatternFeatures` of ``pattern``."""
    stats = distance_stats(pattern)
    return PatternFeatures(stats.mean, stats.mbd, reads_of_input(pattern),
                           *(float(s) for s in _distance_shares(stats)))


def offsets_in_words(pattern: Pattern) -> str:
    """The offsets (target - source) its connections span, with how many connections span
    each, e.g. "reads 1 back x13, 2 back x12, 4 back x10, 8 back x6"."""
    counts = Counter(i - j for block in pattern.blocks for j, i in block.edges())
    return "reads " + ", ".join(f"{o} back x{n}" for o, n in sorted(counts.items()))
