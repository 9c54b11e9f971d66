"""DenseNet-style networks whose layers read exactly the inputs their pattern names."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from search_spaces import Block, Pattern

from ..errors import UserError
from .configs import ArchConfig

if TYPE_CHECKING:
    from .spec import PatternSpec


class DenseLayer(nn.Module):
    """BN-ReLU-Conv3x3(k), or BN-ReLU-Conv1x1(bn_size*k)-BN-ReLU-Conv3x3(k) with bottleneck.

    Receives the list of its input tensors and concatenates them, as torchvision's densenet."""

    def __init__(self, in_channels: int, arch: ArchConfig):
        super().__init__()
        self.memory_efficient = arch.memory_efficient
        width = arch.bn_size * arch.growth if arch.bottleneck else in_channels
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False) if arch.bottleneck else None
        self.norm2 = nn.BatchNorm2d(width) if arch.bottleneck else None
        self.conv2 = nn.Conv2d(width, arch.growth, 3, padding=1, bias=False)

    def _front(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]))
        return self.conv1(x) if self.conv1 is not None else x

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        checkpointed = self.memory_efficient and self.conv1 is not None
        if checkpointed and any(t.requires_grad for t in inputs):
            x = cp.checkpoint(self._front, *inputs, use_reentrant=False)
        else:
            x = self._front(*inputs)
        if self.norm2 is not None:
            x = F.relu(self.norm2(x))
        return self.conv2(x)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for layer, reads in zip(self.layers, self.reads):
            nodes.append(layer([nodes[j] for j in reads]))
        out = [nodes[j] for j in self.reads[-1]]
        return torch.cat(out, 1) if len(out) > 1 else out[0]


class Transition(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(2))


class PatternNet(nn.Module):
    """Stem conv, one DenseBlock per pattern block with transitions between, BN-ReLU-pool-Linear."""

    def __init__(self, pattern: Pattern, arch: ArchConfig):
        super().__init__()
        self.pattern, self.arch = pattern, arch
        c_in, height, width = arch.input_shape
        side = min(height, width) // arch.stem_stride
        if side < 2 ** (len(pattern.blocks) - 1):
            raise UserError(f"architecture: input {height}x{width} with stem stride "
                            f"{arch.stem_stride} is too small for {len(pattern.blocks)} blocks "
                            f"(each transition halves the resolution)")
        channels = arch.stem_width
        self.stem = nn.Conv2d(c_in, channels, 3, stride=arch.stem_stride, padding=1, bias=False)
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
        x = self.stages(self.stem(x))
        x = F.relu(self.norm(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_model(source: "PatternSpec | str | Path") -> PatternNet:
    """The network of a pattern spec, or of a spec file (the one builder)."""
    from .spec import PatternSpec

    spec = source if isinstance(source, PatternSpec) else PatternSpec.load(source)
    return PatternNet(spec.pattern, spec.arch)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image (torch.utils.flop_counter; a multiply-add counts as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    model.train(was_training)
    return int(counter.get_total_flops())
