"""Datasets on the training device: uint8 image tensors, seeded splits, and batches drawn,
augmented and normalised on the device (no DataLoader workers)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from .datasets import DATASETS, DatasetInfo, ImageSize

# --- splits and batches ---------------------------------------------------------------------

@dataclass
class Split:
    """Images (uint8, on device) and labels of one split."""
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataBundle:
    """Train/val (from the training set) and test splits, with normalisation statistics."""
    info: DatasetInfo
    train: Split
    val: Split
    test: Split | None
    mean: torch.Tensor  # (1, C, 1, 1), in 0..1 units
    std: torch.Tensor

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float().div_(255) - self.mean) / self.std


def load_data(name: str, *, root: str | Path | None = None, image_size: ImageSize | None = None,
              train_size: int | None = None, val_size: int | float = 0.1,
              test_size: int | None = None, with_test: bool = False, seed: int = 0,
              device: torch.device | str = "cpu") -> DataBundle:
    """Load ``name`` (found at ``root``; the folder dataset resized to ``image_size``), split
    a seeded validation set off its training set, and move it to ``device``. ``val_size`` is
    a count, or a fraction of the training set when below 1; ``train_size`` and ``test_size``
    take seeded subsets (None: all)."""
    root = Path(root) if root else None
    info = DATASETS[name].at(root, image_size)
    x, y = info.load(root, "train")
    n_val = int(round(val_size * len(x))) if val_size < 1 else int(val_size)
    if not 1 <= n_val < len(x):
        raise DataError(f"val_size {val_size!r} leaves no training or no validation images "
                        f"(the training set has {len(x)})")
    order = np.random.default_rng(seed).permutation(len(x))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if train_size is not None:
        if not 1 <= train_size <= len(train_idx):
            raise DataError(f"train_size {train_size} must be in 1..{len(train_idx)} "
                            f"({name} has {len(x)} training images, {n_val} kept for validation)")
        train_idx = train_idx[:train_size]
    device = torch.device(device)

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(images)).to(device),
                     torch.from_numpy(labels).to(device))

    test = None
    if with_test:
        tx, ty = info.load(root, "test")
        if test_size is not None and test_size < len(tx):
            keep = np.random.default_rng(seed + 1).permutation(len(tx))[:test_size]
            tx, ty = tx[keep], ty[keep]
        test = split(tx, ty)
    bad = (y < 0) | (y >= info.num_classes)
    if bad.any():
        raise DataError(f"dataset {name!r}: label {int(y[bad][0])} outside "
                        f"0..{info.num_classes - 1}")
    train = split(x[train_idx], y[train_idx])
    pixels = train.images.float().div(255)
    mean = pixels.mean(dim=(0, 2, 3), keepdim=True)
    std = pixels.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    return DataBundle(info, train, split(x[val_idx], y[val_idx]), test, mean, std)


def augment(images: torch.Tensor, mode: str, generator: torch.Generator,
            pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding (+ horizontal flip for ``crop_flip``), batched on device."""
    if mode == "none":
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dev, rng = images.device, generator.device
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=rng).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=rng).to(dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(images.shape[1], device=dev)[None, :, None, None]
    out = padded[batch, chan, rows, cols]
    if mode == "crop_flip":
        flip = (torch.rand(n, generator=generator, device=rng) < 0.5).to(dev)[:, None, None, None]
        out = torch.where(flip, out.flip(3), out)
    return out


def draw_order(split: Split, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random order of ``split``'s indices, drawn where ``generator`` lives, on the split's
    device."""
    device = split.labels.device
    drawn_on = generator.device if generator is not None else device
    return torch.randperm(len(split), generator=generator, device=drawn_on).to(device)


def batches(split: Split, batch_size: int, *, shuffle: bool,
            generator: torch.Generator | None = None, drop_last: bool = False,
            on_batch: Callable[[], None] | None = None, order: torch.Tensor | None = None,
            start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images, labels) batches of ``split``, drawn on its device; ``on_batch()`` is
    called before each (raise from it to stop: a study's Ctrl-C lands there). ``order`` is the
    epoch's order (default: drawn here when shuffling, else the split's own); ``start`` the
    first batch to give (an epoch resumed after its first ``start`` batches)."""
    n = len(split)
    if order is None:
        order = draw_order(split, generator) if shuffle else \
            torch.arange(n, device=split.labels.device)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for first in range(start * batch_size, stop, batch_size):
        if on_batch is not None:
            on_batch()
        idx = order[first:first + batch_size]
        yield split.images[idx], split.labels[idx]
