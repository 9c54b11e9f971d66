"""Stems, one registry: the layers between the image and the first block, each named after the
data it suits and carrying its behaviour. Torch-free until a stem is built, so that configs
name and check them without loading torch.

``conv`` is the configurable stem of search networks (its stride set by ``stem_stride``); the
others are what full training picks by input size (:func:`default_stem`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from search_spaces import Registry

from ..errors import UserError

if TYPE_CHECKING:
    import torch.nn as nn

    from .run_config import ArchConfig


@dataclass(frozen=True)
class Stem:
    """A conv (``kernel`` x ``kernel``, ``stride``; None: the config's ``stem_stride``) to the
    stem width, then with ``pool`` BN-ReLU and a 3x3 max-pool of stride 2 (torchvision's
    DenseNet stem)."""

    name: str
    doc: str
    kernel: int = 3
    stride: int | None = 1
    pool: bool = False
    default_up_to: int = 0        # the default stem for inputs of at most this side (0: never)

    def conv_stride(self, arch: "ArchConfig") -> int:
        return arch.stem_stride if self.stride is None else self.stride

    def reduction(self, arch: "ArchConfig") -> int:
        """How many times smaller the first block's feature maps are than the image."""
        return self.conv_stride(arch) * (2 if self.pool else 1)

    def build(self, arch: "ArchConfig") -> "nn.Module":
        import torch.nn as nn

        conv = nn.Conv2d(arch.input_shape[0], arch.stem_width, self.kernel,
                         stride=self.conv_stride(arch), padding=self.kernel // 2, bias=False)
        if not self.pool:
            return conv  # its parameters keep the name `stem.weight` specs and checkpoints use
        return nn.Sequential(conv, nn.BatchNorm2d(arch.stem_width), nn.ReLU(inplace=True),
                             nn.MaxPool2d(3, stride=2, padding=1))


STEMS: Registry[Stem] = Registry("stem", UserError)
for _stem in (
    Stem("conv", "3x3 conv at `stem_stride` (1, 2 or 4): the search networks' stem, its "
         "stride traded for speed (the default of configs and of specs made before stems "
         "had names)", stride=None),
    Stem("mnist", "28x28 grayscale (MNIST, Fashion-MNIST): 3x3 conv, stride 2, to 14x14 maps "
         "(the resolution of the committed Fashion-MNIST studies)", stride=2, default_up_to=28),
    Stem("cifar", "32x32 (CIFAR, SVHN): the paper's CIFAR stem, 3x3 conv, stride 1",
         stride=1, default_up_to=64),
    Stem("imagenet", "large images (ImageNet-style): 7x7 conv, stride 2, then a 3x3 max-pool "
         "of stride 2", kernel=7, stride=2, pool=True, default_up_to=2 ** 31),
):
    STEMS.add(_stem.name, _stem)


def default_stem(input_shape: tuple[int, int, int]) -> str:
    """The stem for images of ``input_shape`` (C, H, W): the first whose sizes cover its
    shorter side."""
    side = min(input_shape[1:])
    return next(name for name, stem in STEMS.items() if side <= stem.default_up_to)
