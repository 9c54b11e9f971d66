"""The engine's settings: the network (ArchConfig), its data (DataConfig) and its training
(TrainConfig). Frozen, validated where they are made; torch-free, so configs load fast."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..settings import require
from .datasets import DATASETS, DatasetInfo, ImageSize, UserDataset, check_resizes
from .stems import STEMS, Stem

if TYPE_CHECKING:
    import torch

    from .loader import DataBundle


@dataclass(frozen=True)
class ArchConfig:
    """Everything about the network except its connections."""

    growth: int = 12                 # k: channels each layer adds
    bottleneck: bool = True          # BN-ReLU-Conv1x1(bn_size*k) before the 3x3 conv
    bn_size: int = 4
    compression: float = 0.5         # transition keeps floor(compression * channels)
    stem: str = "conv"               # a name in STEMS; "conv" strides by stem_stride
    stem_channels: int = 0           # 0: 2k with bottleneck, 16 without (as DenseNet)
    stem_stride: int = 1
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10
    memory_efficient: bool = False   # checkpoint the concat + bottleneck (torchvision's trick)

    def __post_init__(self):
        require(self.growth >= 1, "growth", "must be >= 1")
        require(self.bn_size >= 1, "bn_size", "must be >= 1")
        require(0 < self.compression <= 1, "compression", "must be in (0, 1]")
        require(self.stem_channels >= 0, "stem_channels", "must be >= 0 (0: default width)")
        require(self.stem in STEMS, "stem", STEMS.unknown(self.stem))
        require(self.stem_stride in (1, 2, 4), "stem_stride", "must be 1, 2 or 4")
        require(self.stem_stride == 1 or self.stem_type.stride is None, "stem_stride",
                f"only the 'conv' stem takes a stride; {self.stem!r} has its own")
        require(min(self.input_shape) >= 1, "input_shape", "must be positive (C, H, W)")
        require(self.num_classes >= 2, "num_classes", "must be >= 2")

    @property
    def stem_width(self) -> int:
        return self.stem_channels or (2 * self.growth if self.bottleneck else 16)

    @property
    def stem_type(self) -> Stem:
        return STEMS[self.stem]


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and which part of it; ``load`` gives the tensors on a device."""

    name: str = "fashion-mnist"
    root: str = ""                   # "": $SKIPNAS_DATA, ... (built-ins); folder, npz: theirs
    image_size: int | tuple[int, int] | None = None  # folder: resize to N x N or [H, W]
    train_size: int | None = None    # seeded subset of the training split (None: all)
    val_size: int | float = 0.1      # count, or fraction of the training set when < 1
    test_size: int | None = None
    split_seed: int = 0

    def __post_init__(self):
        require(self.name in DATASETS, "name", DATASETS.unknown(self.name))
        check_resizes(DATASETS[self.name], self.image_hw)
        require(self.image_hw is None or min(self.image_hw) >= 1, "image_size",
                "must be a positive size: N (N x N) or [height, width]")
        require(self.train_size is None or self.train_size >= 1, "train_size", "must be >= 1")
        require(math.isfinite(self.val_size) and self.val_size > 0, "val_size",
                "must be a count >= 1 or a fraction in (0, 1)")
        require(self.val_size < 1 or float(self.val_size).is_integer(), "val_size",
                f"{self.val_size!r} is neither a fraction below 1 nor a whole count")
        require(self.test_size is None or self.test_size >= 1, "test_size", "must be >= 1")
        require(0 <= self.split_seed < 2 ** 32, "split_seed", "must be in 0..2**32-1")

    @property
    def image_hw(self) -> ImageSize | None:
        """``image_size`` as (height, width)."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else size

    @property
    def label(self) -> str:
        """The dataset's name; the user's own data with its file or folder's name too."""
        own = isinstance(DATASETS[self.name], UserDataset)
        return f"{self.name}-{Path(self.root).resolve().name}" if own and self.root else \
            self.name

    def check_root(self) -> None:
        """A ``root`` that is not what the dataset reads (a directory; the npz dataset: a file)
        is an error, as is none for the user's own data (a value, not checked when the config
        is built: a study's stored config is read on other machines too)."""
        DATASETS[self.name].check_root(Path(self.root) if self.root else None)

    @property
    def info(self) -> DatasetInfo:
        """The dataset; the user's own data is read for it (its shape and classes are its
        own)."""
        return DATASETS[self.name].at(Path(self.root) if self.root else None, self.image_hw)

    def load(self, device: "torch.device | str" = "cpu", with_test: bool = False) -> "DataBundle":
        from .loader import load_data
        self.check_root()
        return load_data(self.name, root=self.root or None, image_size=self.image_hw,
                         train_size=self.train_size,
                         val_size=self.val_size, test_size=self.test_size, with_test=with_test,
                         seed=self.split_seed, device=device)


# "none" is the default: on 2 CPU cores compiling the quickstart network took 57 s and its step
# ran no faster (benchmarks/trial_throughput.py --compile); "reduce-overhead" adds CUDA graphs.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | None = 2           # training budget: epochs, or ...
    steps: int | None = None         # ... optimiser steps (overrides epochs)
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    label_smoothing: float = 0.0
    amp: bool = True                 # bf16 autocast on CUDA and on CPUs with native bf16
    compile: str = "none"            # torch.compile mode for the training step, or "none"
    seed: int = 0
    device: str = "auto"             # "auto", "cpu", "cuda", "cuda:1", ...
    threads: int = 0                 # CPU threads; 0: OMP_NUM_THREADS, else every core (a
                                     # study's workers share a machine's cores instead)

    def __post_init__(self):
        require(self.epochs is None or self.epochs >= 1, "epochs", "must be >= 1")
        require(self.steps is None or self.steps >= 1, "steps", "must be >= 1")
        require(self.epochs is not None or self.steps is not None, "epochs",
                "give epochs or steps")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.lr > 0, "lr", "must be > 0")
        require(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
        require(math.isfinite(self.lr) and math.isfinite(self.weight_decay), "lr",
                "lr and weight_decay must be finite")
        require(0 <= self.seed < 2 ** 32, "seed", "must be in 0..2**32-1")
        require(0 <= self.threads <= 1024, "threads", "must be in 0..1024 (0: automatic)")
        require(self.compile in COMPILE_MODES, "compile",
                f"{self.compile!r}: use one of {', '.join(COMPILE_MODES)}")
        require(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None, "device",
                f"{self.device!r}: use auto, cpu, cuda or cuda:N")
