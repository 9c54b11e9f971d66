"""Datasets, one registry: real image sets from their official file formats, and synthetic data.

Images are held as uint8 tensors on the training device; batches are drawn, augmented and
normalised there (no DataLoader workers).
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError
from .settings import require

Arrays = tuple[np.ndarray, np.ndarray]  # images uint8 (N, C, H, W), labels int64 (N,)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    load: Callable[[Path | None, str], Arrays]  # (root or None, "train"|"test") -> arrays
    input_shape: tuple[int, int, int]
    num_classes: int
    augment: str        # "crop_flip", "crop" or "none"
    how_to_get: str


DATASETS: dict[str, DatasetInfo] = {}


def register(name: str, input_shape: tuple[int, int, int], num_classes: int, augment: str,
             how_to_get: str):
    def wrap(load: Callable[[Path | None, str], Arrays]):
        DATASETS[name] = DatasetInfo(name, load, input_shape, num_classes, augment, how_to_get)
        return load
    return wrap


def get_dataset(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def data_home() -> Path:
    """Where datasets are looked for and downloaded: $SKIPNAS_DATA or ~/.cache/skipnas."""
    return Path(os.environ.get("SKIPNAS_DATA", Path.home() / ".cache" / "skipnas"))


def _candidates(name: str, root: Path | None, system: tuple[str, ...] = ()) -> list[Path]:
    dirs = [root] if root is not None else []
    dirs += [data_home() / name, *(Path(s) for s in system)]
    return dirs


def _download(urls: list[str], dest: Path) -> bool:
    """Fetch the first reachable URL into ``dest``; False when offline or SKIPNAS_OFFLINE is set."""
    if os.environ.get("SKIPNAS_OFFLINE"):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    for url in urls:
        try:
            tmp = dest.with_suffix(dest.suffix + ".part")
            with urllib.request.urlopen(url, timeout=20) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            tmp.replace(dest)
            return True
        except OSError:
            continue
    return False


def _missing(info_name: str, looked: list[Path], files: list[str]) -> DataError:
    how = DATASETS[info_name].how_to_get
    return DataError(f"dataset {info_name!r}: {', '.join(files)} not found in "
                     f"{', '.join(str(p) for p in looked)} and could not be downloaded; {how}")


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzipped) as a numpy array; clear error when corrupt."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e}); delete it and fetch it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path}: corrupt IDX file ({len(raw) - header} data bytes for "
                        f"shape {dims})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_loader(name: str, urls: list[str], system: tuple[str, ...] = ()):
    prefix = {"train": "train", "test": "t10k"}

    def load(root: Path | None, split: str) -> Arrays:
        stems = [f"{prefix[split]}-images-idx3-ubyte", f"{prefix[split]}-labels-idx1-ubyte"]
        looked = _candidates(name, root, system)
        for d in looked:
            found = [next((d / (s + ext) for ext in (".gz", "") if (d / (s + ext)).is_file()), None)
                     for s in stems]
            if all(found):
                break
        else:
            target = data_home() / name
            if not all(_download([u + s + ".gz" for u in urls], target / (s + ".gz"))
                       for s in stems):
                raise _missing(name, looked, [s + "[.gz]" for s in stems])
            found = [target / (s + ".gz") for s in stems]
        images, labels = read_idx(found[0]), read_idx(found[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{found[0].parent}: image file {images.shape} and label file "
                            f"{labels.shape} do not match")
        return images[:, None].copy(), labels.astype(np.int64)
    return load


register("fashion-mnist", (1, 28, 28), 10, "none",
         "install the Debian package dataset-fashion-mnist, or put the IDX files in "
         "$SKIPNAS_DATA/fashion-mnist")(
    _idx_loader("fashion-mnist",
                ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
                ("/usr/share/datasets/fashion-mnist",)))
register("mnist", (1, 28, 28), 10, "none",
         "put the four MNIST IDX files in $SKIPNAS_DATA/mnist")(
    _idx_loader("mnist", ["https://ossci-datasets.s3.amazonaws.com/mnist/"]))


# --- CIFAR (python pickle batches) ----------------------------------------------------------

def _cifar_loader(name: str, folder: str, url: str, files: dict[str, list[str]], label_key: str):
    def load(root: Path | None, split: str) -> Arrays:
        looked = _candidates(name, root)
        dirs = [d / folder for d in looked] + looked
        base = next((d for d in dirs if all((d / f).is_file() for f in files[split])), None)
        if base is None:
            archive = data_home() / name / url.rsplit("/", 1)[1]
            if not _download([url], archive):
                raise _missing(name, looked, [f"{folder}/{f}" for f in files[split]])
            with tarfile.open(archive) as tar:
                tar.extractall(archive.parent, filter="data")
            base = archive.parent / folder
        xs, ys = [], []
        for f in files[split]:
            try:
                with open(base / f, "rb") as fh:
                    batch = pickle.load(fh, encoding="bytes")
                x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(batch[label_key.encode()], dtype=np.int64)
            except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError,
                    TypeError) as e:
                raise DataError(f"{base / f}: corrupt CIFAR batch ({type(e).__name__}: {e}); "
                                f"delete it and fetch it again") from None
            if len(x) != len(y):
                raise DataError(f"{base / f}: {len(x)} images but {len(y)} labels")
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)
    return load


register("cifar10", (3, 32, 32), 10, "crop_flip",
         "put cifar-10-batches-py (python version) in $SKIPNAS_DATA/cifar10")(
    _cifar_loader("cifar10", "cifar-10-batches-py",
                  "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                  {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                  "labels"))
register("cifar100", (3, 32, 32), 100, "crop_flip",
         "put cifar-100-python (python version) in $SKIPNAS_DATA/cifar100")(
    _cifar_loader("cifar100", "cifar-100-python",
                  "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                  {"train": ["train"], "test": ["test"]}, "fine_labels"))


# --- SVHN (.mat) ----------------------------------------------------------------------------

@register("svhn", (3, 32, 32), 10, "crop",
          "put train_32x32.mat and test_32x32.mat in $SKIPNAS_DATA/svhn")
def _load_svhn(root: Path | None, split: str) -> Arrays:
    from scipy.io import loadmat

    file = f"{split}_32x32.mat"
    looked = _candidates("svhn", root)
    path = next((d / file for d in looked if (d / file).is_file()), None)
    if path is None:
        path = data_home() / "svhn" / file
        if not _download([f"http://ufldl.stanford.edu/housenumbers/{file}"], path):
            raise _missing("svhn", looked, [file])
    try:
        mat = loadmat(path)
        x = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))
        y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    except Exception as e:  # scipy raises many types for a damaged .mat
        raise DataError(f"{path}: corrupt SVHN file ({type(e).__name__}: {e})") from None
    if x.shape[1:] != (3, 32, 32) or len(x) != len(y):
        raise DataError(f"{path}: unexpected shapes X {x.shape}, y {y.shape}")
    y[y == 10] = 0  # SVHN labels the digit 0 as 10
    return x, y


# --- synthetic ------------------------------------------------------------------------------

SYNTHETIC_SIZES = {"train": 3072, "test": 512}


@register("synthetic", (1, 16, 16), 10, "none", "it is generated, nothing to get")
def _load_synthetic(root: Path | None, split: str) -> Arrays:
    """Ten classes, each a fixed random blob pattern, plus pixel noise and a random shift.
    Learnable in one short epoch; deterministic (seeded by the split)."""
    shape = DATASETS["synthetic"].input_shape
    prototypes = np.random.default_rng(1234).normal(size=(10, *shape))
    prototypes = F.avg_pool2d(torch.tensor(prototypes), 3, 1, 1).numpy()  # smooth blobs
    rng = np.random.default_rng({"train": 1, "test": 2}[split])
    n = SYNTHETIC_SIZES[split]
    y = rng.integers(0, 10, n)
    x = prototypes[y] + 0.2 * rng.normal(size=(n, *shape))
    shifts = rng.integers(-1, 2, size=(n, 2))
    x = np.stack([np.roll(img, tuple(s), axis=(1, 2)) for img, s in zip(x, shifts)])
    x = (x - x.min()) / (x.max() - x.min()) * 255
    return x.astype(np.uint8), y.astype(np.int64)


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


def load_data(name: str, *, root: str | Path | None = None, train_size: int | None = None,
              val_size: int | float = 0.1, test_size: int | None = None,
              with_test: bool = False, seed: int = 0,
              device: torch.device | str = "cpu") -> DataBundle:
    """Load ``name``, split a seeded validation set off its training set, and move it to
    ``device``. ``val_size`` is a count, or a fraction of the training set when below 1; ``train_size`` and
    ``test_size`` take seeded subsets (None: all)."""
    info = get_dataset(name)
    root = Path(root) if root else None
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
        raise DataError(f"dataset {name!r}: label {int(y[bad][0])} outside 0..{info.num_classes - 1}")
    train = split(x[train_idx], y[train_idx])
    pixels = train.images.float().div(255)
    mean = pixels.mean(dim=(0, 2, 3), keepdim=True)
    std = pixels.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    return DataBundle(info, train, split(x[val_idx], y[val_idx]), test, mean, std)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and which part of it; ``load`` gives the tensors on a device."""

    name: str = "fashion-mnist"
    root: str = ""                   # "" : $SKIPNAS_DATA, ~/.cache/skipnas, system paths
    train_size: int | None = None    # seeded subset of the training split (None: all)
    val_size: int | float = 0.1      # count, or fraction of the training set when < 1
    test_size: int | None = None
    split_seed: int = 0

    def __post_init__(self):
        require(self.name in DATASETS, "name",
                f"unknown dataset {self.name!r}; known: {', '.join(DATASETS)}")
        require(self.train_size is None or self.train_size >= 1, "train_size", "must be >= 1")
        require(self.val_size > 0, "val_size", "must be > 0")
        require(self.test_size is None or self.test_size >= 1, "test_size", "must be >= 1")

    @property
    def info(self) -> DatasetInfo:
        return DATASETS[self.name]

    def load(self, device: torch.device | str = "cpu", with_test: bool = False) -> "DataBundle":
        return load_data(self.name, root=self.root or None, train_size=self.train_size,
                         val_size=self.val_size, test_size=self.test_size, with_test=with_test,
                         seed=self.split_seed, device=device)


def augment(images: torch.Tensor, mode: str, generator: torch.Generator,
            pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding (+ horizontal flip for ``crop_flip``), batched on device."""
    if mode == "none":
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dev = images.device
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(dev)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(images.shape[1], device=dev)[None, :, None, None]
    out = padded[batch, chan, rows, cols]
    if mode == "crop_flip":
        flip = (torch.rand(n, generator=generator) < 0.5).to(dev)[:, None, None, None]
        out = torch.where(flip, out.flip(3), out)
    return out


def batches(split: Split, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
            drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images, labels) batches of ``split``, drawn on its device."""
    n = len(split)
    order = (torch.randperm(n, generator=generator).to(split.labels.device) if shuffle
             else torch.arange(n, device=split.labels.device))
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield split.images[idx], split.labels[idx]
