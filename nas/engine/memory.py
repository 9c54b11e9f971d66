"""Will a network fit? A torch-free estimate of one training step's memory, checked before
anything is built, so that a config or spec asking for a network far too large is refused with
its estimate instead of hanging or failing deep inside torch."""
from __future__ import annotations

import os
from collections.abc import Sequence

from search_spaces.pattern import MAX_LAYERS

from ..errors import UserError
from .run_config import ArchConfig

GIB = 2 ** 30


def log_connections(num_layers: int) -> int:
    """Connections of the log template on one block (closed form, no pattern built)."""
    return sum(i.bit_length() for i in range(1, num_layers + 2))


def estimate_bytes(stages: Sequence[int], connections: int, arch: ArchConfig,
                   batch_size: int) -> tuple[int, int]:
    """(activations autograd keeps for one step, weights + gradients + momentum), in bytes,
    float32. Each connection brings about ``growth`` channels to a layer's input; a layer keeps
    its input concatenation and normalised copy, its bottleneck and its output."""
    channels, height, width = arch.input_shape
    stem = arch.stem_type
    side_h, side_w = height // stem.reduction(arch), width // stem.reduction(arch)
    total_layers = sum(stages)
    bottleneck = arch.bn_size * arch.growth if arch.bottleneck else 0
    activations = 3 * arch.stem_width * side_h * side_w
    weights = channels * arch.stem_width * stem.kernel ** 2
    for b, layers in enumerate(stages):
        area = max(1, side_h >> b) * max(1, side_w >> b)
        inputs = connections * layers // total_layers * arch.growth + arch.stem_width
        activations += area * (2 * inputs + layers * (3 * bottleneck + 2 * arch.growth))
        per_layer_in = inputs // layers
        weights += layers * (per_layer_in * (bottleneck or 1)
                             + (bottleneck or per_layer_in) * arch.growth * 9)
    return 4 * batch_size * activations, 3 * 4 * weights


def machine_memory() -> int:
    """Physical memory of this machine, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(stages: Sequence[int], connections: int, arch: ArchConfig,
               batch_size: int, where: str = "network") -> None:
    """Refuse a network that has too many layers or whose estimate exceeds this machine's
    memory; the message gives the estimate."""
    if sum(stages) > MAX_LAYERS:
        raise UserError(f"{where}: {sum(stages)} layers; skipnas handles at most {MAX_LAYERS} "
                        f"per network")
    activations, weights = estimate_bytes(stages, connections, arch, batch_size)
    if activations + weights > machine_memory():
        raise UserError(f"{where}: too large for this machine: about {activations / GIB:,.1f} "
                        f"GiB of activations for a batch of {batch_size} and "
                        f"{weights / GIB:,.1f} GiB of weights, gradients and momentum "
                        f"({machine_memory() / GIB:.0f} GiB here); use fewer layers, a smaller "
                        f"growth or a smaller batch")
