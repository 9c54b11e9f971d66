"""DenseNet-style networks whose layers read exactly the inputs their pattern names."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from search_spaces import Block, Pattern, Registry
from search_spaces.styles import PER_BLOCK, V1, V2

from ..errors import UserError
from .memory import check_fits
from .run_config import ArchConfig

if TYPE_CHECKING:
    from .spec import PatternSpec


class DenseLayer(nn.Module):
    """BN-ReLU-Conv3x3(k), or BN-ReLU-Conv1x1(bn_size*k)-BN-ReLU-Conv3x3(k) with bottleneck.

    Receives the list of its input tensors and concatenates them, as torchvision's densenet."""

    def __init__(self, in_channels: int, arch: ArchConfig):
        super().__init__()
        self.checkpointed = arch.memory_efficient and arch.bottleneck
        width = arch.bn_size * arch.growth if arch.bottleneck else in_channels
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False) if arch.bottleneck else None
        self.norm2 = nn.BatchNorm2d(width) if arch.bottleneck else None
        self.conv2 = nn.Conv2d(width, arch.growth, 3, padding=1, bias=False)

    def _front(self, *inputs: torch.Tensor) -> torch.Tensor:
        # In place: a batch norm's output is its own fresh tensor, needed by nothing else.
        x = F.relu(self.norm1(torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]),
                   inplace=True)
        return self.conv1(x) if self.conv1 is not None else x

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.checkpointed and any(t.requires_grad for t in inputs):
            x = cp.checkpoint(self._front, *inputs, use_reentrant=False)
        else:
            x = self._front(*inputs)
        if self.norm2 is not None:
            x = F.relu(self.norm2(x), inplace=True)
        return self.conv2(x)


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(tensors, 1) if len(tensors) > 1 else tensors[0]


class DenseBlock(nn.Module):
    """The layers of one block; returns the block output's input list (node L+1)."""

    def __init__(self, block: Block, in_channels: int, arch: ArchConfig):
        super().__init__()
        self.reads = block.inputs
        channels = [in_channels] + [arch.growth] * block.num_layers
        self.layers = nn.ModuleList(
            DenseLayer(sum(channels[j] for j in block.reads(i)), arch)
            for i in range(1, block.num_layers + 1))
        self.out_channels = sum(channels[j] for j in block.reads(block.num_layers + 1))

    def nodes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The block input and every layer's output: nodes 0..L."""
        nodes = [x]
        joined = x
        joined_reads: tuple[int, ...] = (0,)
        for layer, reads in zip(self.layers, self.reads):
            if layer.checkpointed:  # the concatenation stays inside the checkpoint
                nodes.append(layer([nodes[j] for j in reads]))
                continue
            # A layer reading the previous layer's inputs and output extends that concatenation
            # (DenseNet's running feature map): one copy and one gradient sum, not one per node.
            extends = reads == joined_reads + (len(nodes) - 1,)
            joined = _cat([joined, nodes[-1]] if extends else [nodes[j] for j in reads])
            joined_reads = reads
            nodes.append(layer([joined]))
        return nodes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = self.nodes(x)
        return _cat([nodes[j] for j in self.reads[-1]])


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1-AvgPool2: DenseNet's transition, halving the resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(2))


class Body(nn.Module):
    """A network style's part between the stem and the head: built from the pattern, the
    architecture and the stem's width; ``out_channels`` is what the head reads."""

    out_channels: int


class PerBlockBody(Body):
    """per_block: each block's output node feeds one DenseNet transition (to
    floor(compression x its width) channels) into the next block."""

    def __init__(self, pattern: Pattern, arch: ArchConfig, channels: int):
        super().__init__()
        stages: list[nn.Module] = []
        for b, block in enumerate(pattern.blocks):
            dense = DenseBlock(block, channels, arch)
            stages.append(dense)
            channels = dense.out_channels
            if b < len(pattern.blocks) - 1:
                out = max(1, int(arch.compression * channels))
                stages.append(Transition(channels, out))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


class V1Body(Body):
    """v1 (Log-DenseNet V1): the layers of the one global block, stage by stage. At the end of a
    stage, every node still read later is transitioned on its own (BN-ReLU-Conv1x1 to
    floor(compression x its width)-AvgPool2, as the authors' `compute_transition`), so a layer
    reads an earlier stage's node through that node's own transitions."""

    def __init__(self, pattern: Pattern, arch: ArchConfig, channels: int):
        super().__init__()
        block = pattern.blocks[0]
        n = block.num_layers
        stage = [0] + [s for s, L in enumerate(pattern.stages) for _ in range(L)] + \
                [len(pattern.stages) - 1]                      # nodes 0..N+1 (head last)
        self.reads, self.stage = block.inputs, stage
        # The last stage at which each node is read: transitioned up to there, then dropped.
        self.read_until = [stage[j] for j in range(n + 2)]
        for i in range(1, n + 2):
            for j in block.reads(i):
                self.read_until[j] = max(self.read_until[j], stage[i])
        width = {(0, 0): channels}
        self.transitions = nn.ModuleDict()
        self.layers = nn.ModuleList()
        for i in range(1, n + 1):
            if stage[i] > stage[i - 1]:
                self._add_transitions(stage[i - 1], i, width, arch)
            self.layers.append(DenseLayer(sum(width[j, stage[i]] for j in block.reads(i)), arch))
            width[i, stage[i]] = arch.growth
        self.out_channels = sum(width[j, stage[-1]] for j in block.reads(n + 1))

    def _add_transitions(self, s: int, upto: int, width: dict[tuple[int, int], int],
                         arch: ArchConfig) -> None:
        for j in range(upto):
            if self.stage[j] <= s < self.read_until[j]:
                width[j, s + 1] = max(1, int(arch.compression * width[j, s]))
                self.transitions[f"{s}_{j}"] = Transition(width[j, s], width[j, s + 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = {0: x}
        for i, layer in enumerate(self.layers, start=1):
            s = self.stage[i - 1]
            if self.stage[i] > s:  # a new stage: carry what is still read, drop the rest
                feats = {j: self.transitions[f"{s}_{j}"](f) for j, f in feats.items()
                         if self.read_until[j] > s}
            feats[i] = layer([feats[j] for j in self.reads[i - 1]])
        return _cat([feats[j] for j in self.reads[-1]])


def v2_new_width(arch: ArchConfig, total_layers: int, block_layers: int) -> int:
    """Channels the authors' V2 compresses a block's layers to: g x (floor(log2(N+1)) + 1),
    at most the layers' own g x L (N: the network's layers)."""
    return min(arch.growth * int(total_layers + 1).bit_length(), arch.growth * block_layers)


class V2Block(nn.Module):
    """One v2 block that is not the last, and its compression into the next context."""

    def __init__(self, block: Block, channels: int, arch: ArchConfig, total_layers: int):
        super().__init__()
        new = v2_new_width(arch, total_layers, block.num_layers)
        self.dense = DenseBlock(block, channels, arch)
        self.old = Transition(channels, channels)
        self.new = Transition(arch.growth * block.num_layers, new)
        self.out_channels = channels + new

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        nodes = self.dense.nodes(context)
        return torch.cat([self.old(nodes[0]), self.new(_cat(nodes[1:]))], 1)


class V2Body(Body):
    """v2 (Log-DenseNet V2): every layer of block b reads the context C_b (node 0). At the end of
    a block, C_{b+1} = concat(O_b, N_b): O_b transitions C_b at its own width, N_b the block's
    layers to :func:`v2_new_width` channels (the authors' `update_compressed_feature`; the
    compression setting is not used). The last block's head reads what its node L+1 names."""

    def __init__(self, pattern: Pattern, arch: ArchConfig, channels: int):
        super().__init__()
        stages = []
        *inner, last = pattern.blocks
        for block in inner:
            stages.append(V2Block(block, channels, arch, sum(pattern.stages)))
            channels = stages[-1].out_channels
        self.stages = nn.Sequential(*stages)
        self.last = DenseBlock(last, channels, arch)
        self.out_channels = self.last.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.stages(x))


# One body per registered network style, under its name (tests/test_styles.py checks the pairing).
BODIES: Registry[type[Body]] = Registry("network style", UserError)
BODIES.add(PER_BLOCK.name, PerBlockBody)
BODIES.add(V1.name, V1Body)
BODIES.add(V2.name, V2Body)


class PatternNet(nn.Module):
    """The stem (:data:`~nas.engine.stems.STEMS`), the body of the pattern's network style,
    BN-ReLU-pool-Linear head."""

    def __init__(self, pattern: Pattern, arch: ArchConfig):
        super().__init__()
        check_fits(pattern.stages, pattern.connections, arch, 1)
        self.pattern, self.arch = pattern, arch
        _, height, width = arch.input_shape
        reduction = arch.stem_type.reduction(arch)
        if min(height, width) // reduction < 2 ** (len(pattern.stages) - 1):
            raise UserError(f"architecture: input {height}x{width} with the {arch.stem} stem "
                            f"(stride {reduction}) is too small for {len(pattern.stages)} "
                            f"blocks (each transition halves the resolution)")
        self.stem = arch.stem_type.build(arch)
        self.body = BODIES[pattern.style](pattern, arch, arch.stem_width)
        channels = self.body.out_channels
        self.norm = nn.BatchNorm2d(channels)
        self.classifier = nn.Linear(channels, arch.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        x = F.relu(self.norm(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_model(source: "PatternSpec | str | Path", *, in_channels: int | None = None,
                input_size: int | tuple[int, int] | None = None, num_classes: int | None = None,
                growth: int | None = None, stem: str | None = None,
                layers: Sequence[int] | None = None, **arch: Any) -> PatternNet:
    """The network of a pattern spec, or of a spec file (the one builder). Keywords scale it
    for another target as :meth:`PatternSpec.scaled` does (``spec.scaled(...)`` gives the
    spec of that network, its metrics measured): ``in_channels``, ``input_size`` and
    ``num_classes`` for the data, ``growth``, ``stem`` (default: the one for the input size),
    ``layers`` (a template or offsets pattern, re-derived at those depths), and any other
    ArchConfig field."""
    from .spec import PatternSpec

    spec = source if isinstance(source, PatternSpec) else PatternSpec.load(source)
    named = {"in_channels": in_channels, "input_size": input_size, "num_classes": num_classes,
             "growth": growth, "stem": stem, "layers": layers}
    changes = {**{k: v for k, v in named.items() if v is not None}, **arch}
    if not changes:
        return PatternNet(spec.pattern, spec.arch)
    return PatternNet(*spec.scaled_network(**changes))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image, as torch.utils.flop_counter counts them (a multiply-add
    counts as 2; convolutions and linear layers, the only ops it counts that these networks
    run: tests/test_model.py checks the two agree). Counted from each layer's output by forward
    hooks, 4-5x faster than its FlopCounterMode: a worker counts every trial's network."""
    total = 0

    def conv(m: nn.Conv2d, inputs: object, out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear(m: nn.Linear, inputs: object, out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total
