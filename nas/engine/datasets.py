"""Datasets, one registry: real image sets read from their official file formats, and
synthetic data, as numpy arrays (torch-free; `data` moves them to the device)."""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tarfile
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search_spaces import Registry

from ..errors import DataError

Arrays = tuple[np.ndarray, np.ndarray]  # images uint8 (N, C, H, W), labels int64 (N,)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    load: Callable[[Path | None, str], Arrays]  # (root or None, "train"|"test") -> arrays
    input_shape: tuple[int, int, int]
    num_classes: int
    augment: str        # "crop_flip", "crop" or "none"
    how_to_get: str


Loader = Callable[[Path | None, str], Arrays]
DATASETS: Registry[DatasetInfo] = Registry("dataset", DataError)


def register(name: str, input_shape: tuple[int, int, int], num_classes: int, augment: str,
             how_to_get: str) -> Callable[[Loader], Loader]:
    def wrap(load: Loader) -> Loader:
        DATASETS.add(name, DatasetInfo(name, load, input_shape, num_classes, augment, how_to_get))
        return load
    return wrap


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

MAX_IDX_BYTES = 1 << 30  # an IDX file may declare up to 1 GiB of data (EMNIST's largest: 0.55)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzipped) as a numpy array; clear error when corrupt. Only the
    data its header declares is read (at most MAX_IDX_BYTES), so a decompression bomb is
    refused without being inflated."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:3] != b"\0\0\x08":
                raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
            dims = tuple(int.from_bytes(f.read(4), "big") for _ in range(magic[3]))
            size = int(np.prod(dims, dtype=object))
            if size > MAX_IDX_BYTES:
                raise DataError(f"{path}: its header declares shape {dims}, {size} bytes; an "
                                f"IDX file may hold at most {MAX_IDX_BYTES} bytes")
            raw, extra = f.read(size), f.read(1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e}); delete it and fetch it again") from None
    if len(raw) != size or extra:
        raise DataError(f"{path}: corrupt IDX file ({len(raw)}{'+' if extra else ''} data "
                        f"bytes for shape {dims})")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


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
        image_file, label_file = (p for p in found if p is not None)
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{image_file.parent}: image file {images.shape} and label file "
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

class CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else: the only globals allowed are numpy's array
    reconstruction and bytes decoding, so a tampered file cannot run code (a plain
    `pickle.load` would call whatever the file names)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch "
                                         f"(the file may have been tampered with)")
        return super().find_class(module, name)


def read_cifar_batch(path: Path, label_key: str) -> Arrays:
    """Images (N, 3, 32, 32) and labels of one CIFAR batch file."""
    with open(path, "rb") as fh:
        batch = CifarUnpickler(fh, encoding="bytes").load()
    if not isinstance(batch, dict):
        raise TypeError(f"expected a dict, found {type(batch).__name__}")
    data, labels = batch[b"data"], batch[label_key.encode()]
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "uib":
        raise TypeError("data is not a numeric array")
    x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    # Labels are a list of ints or an integer array; checked item by item before numpy reads
    # them, since a list that nests one shared list stands for billions of items in a few KB.
    if isinstance(labels, list) and len(labels) == len(x) and \
            all(type(v) is int for v in labels):
        return x, np.asarray(labels, dtype=np.int64)
    if isinstance(labels, np.ndarray) and labels.shape == (len(x),) and \
            labels.dtype.kind in "ui":
        return x, labels.astype(np.int64)
    raise TypeError(f"the labels are not {len(x)} integers, one per image")


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
                x, y = read_cifar_batch(base / f, label_key)
            except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError,
                    TypeError, AttributeError, IndexError) as e:
                raise DataError(f"{base / f}: corrupt CIFAR batch ({type(e).__name__}: {e}); "
                                f"delete it and fetch it again") from None
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
    import torch
    import torch.nn.functional as F
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
