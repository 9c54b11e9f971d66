"""Datasets, one registry: real image sets read from their official file formats, synthetic
data, and the user's own (an image folder, an npz file), as numpy arrays (torch-free; `data`
moves them to the device)."""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from search_spaces import Registry

from ..errors import DataError, UserError
from ..settings import require

Arrays = tuple[np.ndarray, np.ndarray]  # images uint8 (N, C, H, W), labels int64 (N,)
ImageSize = tuple[int, int]             # (height, width)
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its loader, the shape of its images and its classes. A built-in is the
    same wherever it is found; the user's own data resolves to one (:meth:`UserDataset.at`)."""
    name: str
    load: Callable[[Path | None, str], Arrays]  # (root or None, "train"|"test") -> arrays
    input_shape: tuple[int, int, int]
    num_classes: int
    augment: str        # "crop_flip", "crop" or "none"
    how_to_get: str
    resizes: ClassVar[bool] = False  # its images have one size: no data.image_size

    def check_root(self, root: Path | None) -> None:
        """``root`` (None: the default places) is where its files can be."""
        require(root is None or root.is_dir(), "root", f"{str(root)!r} is not a directory")

    def at(self, root: Path | None, image_size: ImageSize | None = None) -> DatasetInfo:
        """The dataset as found at ``root``: a built-in is always itself."""
        check_resizes(self, image_size)
        return self


def check_resizes(dataset: DatasetInfo | UserDataset, image_size: ImageSize | None) -> None:
    """An ``image_size`` only for a dataset that resizes its images."""
    require(image_size is None or dataset.resizes, "image_size",
            f"only the folder dataset resizes its images; {dataset.name}'s are the size they are")


Loader = Callable[[Path | None, str], Arrays]
DATASETS: Registry[DatasetInfo | UserDataset] = Registry("dataset", DataError)


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
    shape = DATASETS["synthetic"].at(None).input_shape
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


# --- the user's own data: an image folder, an npz file --------------------------------------

@dataclass(frozen=True)
class UserData:
    """The user's images as read and checked: uint8 (N, C, H, W), labels 0..K-1 (int64), the
    K class names, and the test split where the data has one."""
    train: Arrays
    test: Arrays | None
    classes: tuple[str, ...]


@dataclass(frozen=True)
class UserDataset:
    """A family of the user's own data. Where a built-in has a fixed shape and classes, these
    are the data's own: :meth:`at` reads them (``read``, which checks everything) from the
    directory or file that data.root names."""
    name: str
    read: Callable[[Path, ImageSize | None], UserData]
    root_is: Literal["directory", "file"]
    resizes: bool                 # takes data.image_size
    how_to_get: str
    no_test: str                  # how to give it a test split

    def check_root(self, root: Path | None) -> None:
        if root is None:
            raise UserError(f"root: the {self.name} dataset reads {self.how_to_get}: give its "
                            f"path (data.root, or --data-dir)")
        exists = root.is_dir() if self.root_is == "directory" else root.is_file()
        require(exists, "root", f"{str(root)!r} is not a {self.root_is}")

    def at(self, root: Path | None, image_size: ImageSize | None = None) -> DatasetInfo:
        """The data at ``root``, read (once per process while it is unchanged) and checked."""
        check_resizes(self, image_size)
        self.check_root(root)
        assert root is not None  # check_root refuses None
        data = self.read(root, image_size)

        def load(_: Path | None, split: str) -> Arrays:
            if split == "train":
                return data.train
            if data.test is None:
                raise DataError(f"{root} has no test split; {self.no_test}")
            return data.test
        c, h, w = data.train[0].shape[1:]
        return DatasetInfo(self.name, load, (c, h, w), len(data.classes), "none", self.how_to_get)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # read as one channel; other modes as RGB
CACHE_VERSION = 1  # of the folder cache's layout: a new version reads every folder again


class ImageFile(NamedTuple):
    split: str          # "train" or "test"
    path: str           # relative to the folder's root
    label: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FolderLayout:
    """What an image folder holds: its classes (the training split's folder names, sorted) and
    every image file with its size and modification time, which key its cache."""
    root: Path
    classes: tuple[str, ...]
    files: tuple[ImageFile, ...]

    def key(self, image_size: ImageSize | None) -> str:
        """What its cache must have been made from: these files at this size."""
        text = json.dumps([CACHE_VERSION, image_size, self.files])
        return hashlib.sha256(text.encode()).hexdigest()


def _visible(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder`` by name; hidden ones (.DS_Store, .ipynb_checkpoints) are not
    data."""
    try:
        with os.scandir(folder) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")),
                          key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"{folder}: cannot list ({e.strerror})") from None


def _class_folders(folder: Path) -> dict[str, list[os.DirEntry[str]]]:
    """Class name -> its image files, of a folder holding one folder of images per class."""
    found: dict[str, list[os.DirEntry[str]]] = {}
    for entry in _visible(folder):
        if not entry.is_dir():
            raise DataError(f"{entry.path}: not a folder; {folder} holds one folder of images "
                            f"per class")
        images = _visible(Path(entry.path))
        for f in images:
            if f.is_dir() or not f.name.lower().endswith(IMAGE_SUFFIXES):
                raise DataError(f"{f.path}: not a .png, .jpg or .jpeg file; a class folder "
                                f"holds only images")
        if not images:
            raise DataError(f"{entry.path}: an empty class folder (no .png, .jpg or .jpeg "
                            f"image)")
        found[entry.name] = images
    return found


def scan_folder(root: Path) -> FolderLayout:
    """The layout of an image folder: ``root/<class>/*`` (no test split), or
    ``root/train/<class>/*`` with ``root/test/<class>/*`` when root holds only those two."""
    root = root.resolve()
    top = {e.name for e in _visible(root)}
    if "train" in top and top <= {"train", "test"} and (root / "train").is_dir():
        splits = {split: root / split for split in sorted(top)}
    else:
        splits = {"train": root}
    found = {split: _class_folders(folder) for split, folder in splits.items()}
    classes = tuple(found["train"])
    if len(classes) < 2:
        raise DataError(f"{splits['train']}: {len(classes)} class folder"
                        f"{'' if len(classes) == 1 else 's'}; a folder dataset needs one "
                        f"folder of images per class, at least 2")
    if "test" in found:
        if not found["test"]:
            raise DataError(f"{splits['test']}: no class folders (remove it, or give it one "
                            f"folder of test images per class)")
        if extra := sorted(set(found["test"]) - set(classes)):
            raise DataError(f"{splits['test'] / extra[0]}: a test class with no training "
                            f"folder {splits['train'] / extra[0]}")
    label = {name: i for i, name in enumerate(classes)}
    files = []
    for split, by_class in found.items():
        for name, images in by_class.items():
            for f in images:
                stat = f.stat()
                files.append(ImageFile(split, str(Path(f.path).relative_to(root)), label[name],
                                       stat.st_size, stat.st_mtime_ns))
    return FolderLayout(root, classes, tuple(files))


def read_folder(root: Path, image_size: ImageSize | None = None) -> UserData:
    """An image folder's images and labels, from its cache when the folder is unchanged."""
    return _folder_data(scan_folder(root), image_size)


def cache_path(root: Path, image_size: ImageSize | None) -> Path:
    """Where the arrays of an image folder are cached: one file per folder and image size."""
    name = hashlib.sha256(json.dumps([str(root.resolve()), image_size]).encode()).hexdigest()
    return data_home() / "cache" / f"folder-{root.name}-{name[:16]}.npz"


@functools.lru_cache(maxsize=1)  # a config is read, then its data: one read per process
def _folder_data(layout: FolderLayout, image_size: ImageSize | None) -> UserData:
    cache, key = cache_path(layout.root, image_size), layout.key(image_size)
    data = _load_cache(cache, key)
    if data is None:
        data = _decode_folder(layout, image_size)
        _save_cache(cache, key, data)
    return data


def _decode_folder(layout: FolderLayout, image_size: ImageSize | None) -> UserData:
    from tqdm import tqdm

    images: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    first: tuple[Path, tuple[int, ...]] | None = None
    for f in tqdm(layout.files, desc=f"reading {layout.root}", unit="image", disable=None,
                  leave=False):
        path = layout.root / f.path
        image = _decode(path, image_size)
        if first is None:
            first = (path, image.shape[:2])
        elif image.shape[:2] != first[1]:
            (h, w), (h2, w2) = first[1], image.shape[:2]
            raise DataError(f"{layout.root}: images of different sizes ({first[0]} is {w}x{h}, "
                            f"{path} {w2}x{h2} pixels); set data.image_size (--image-size) to "
                            f"resize them all")
        images[f.split].append(image)
    colour = any(image.ndim == 3 for split in images.values() for image in split)

    def arrays(split: str) -> Arrays:
        x = np.stack([np.dstack([image] * 3) if colour and image.ndim == 2 else
                      image.reshape(*image.shape[:2], -1) for image in images[split]])
        y = np.array([f.label for f in layout.files if f.split == split], dtype=np.int64)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y
    return UserData(arrays("train"), arrays("test") if images["test"] else None, layout.classes)


def _decode(path: Path, image_size: ImageSize | None) -> np.ndarray:
    """One image as uint8 (H, W) when greyscale, else (H, W, 3), resized to ``image_size``."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("L" if opened.mode in GREY_MODES else "RGB")
        if image_size is not None and image.size != image_size[::-1]:
            image = image.resize(image_size[::-1], Image.Resampling.BILINEAR)
        return np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def _load_cache(path: Path, key: str) -> UserData | None:
    """The cached arrays of a folder whose files are still ``key``'s; None otherwise."""
    try:
        with np.load(path) as z:
            if z["key"].item() != key:
                return None
            test = (z["x_test"], z["y_test"]) if "x_test" in z.files else None
            return UserData((z["x"], z["y"]), test, tuple(str(c) for c in z["classes"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        _log.warning("cannot read the cache %s (%s): reading the folder again", path, e)
        return None


def _save_cache(path: Path, key: str, data: UserData) -> None:
    """Write the cache atomically (a temporary file renamed): workers that start together on
    one machine each see a whole file or none."""
    arrays = {"key": np.array(key), "classes": np.array(data.classes), "x": data.train[0],
              "y": data.train[1]}
    if data.test is not None:
        arrays |= {"x_test": data.test[0], "y_test": data.test[1]}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
        tmp.chmod(0o644)  # readable as the images are (mkstemp makes it private)
        tmp.replace(path)
    except OSError as e:
        _log.warning("cannot write the cache %s (%s): the folder is read again next time",
                     path, e.strerror or e)
        if tmp is not None:
            tmp.unlink(missing_ok=True)


NPZ_ARRAYS = ("x", "y", "x_test", "y_test")


def read_npz(path: Path, image_size: ImageSize | None = None) -> UserData:
    """An npz file's images and labels (their own size: ``image_size`` is refused before)."""
    stat = path.stat()
    return _npz_data(path.resolve(), (stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=1)  # a config is read, then its data: one read per process
def _npz_data(path: Path, stamp: tuple[int, int]) -> UserData:
    arrays = _npz_arrays(path)
    x = _npz_images(path, "x", arrays["x"])
    y, classes = _npz_labels(path, "y", arrays["y"], len(x), None)
    test = None
    if "x_test" in arrays:
        tx = _npz_images(path, "x_test", arrays["x_test"])
        if tx.shape[1:] != x.shape[1:]:
            raise DataError(f"{path}: x_test's images are {tx.shape[1:]} (C, H, W), x's "
                            f"{x.shape[1:]}")
        test = (tx, _npz_labels(path, "y_test", arrays["y_test"], len(tx), classes)[0])
    return UserData((x, y), test, tuple(str(i) for i in range(classes)))


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: one array, not an .npz archive of x and y "
                        f"(np.savez(path, x=images, y=labels))")
    with archive:
        names = archive.files
        for name in names:
            if name not in NPZ_ARRAYS:
                raise DataError(f"{path}: an array {name!r}; an npz dataset holds x, y and "
                                f"optionally x_test, y_test")
        for name in ("x", "y"):
            if name not in names:
                raise DataError(f"{path}: no array {name!r} (it holds "
                                f"{', '.join(names) or 'none'}); an npz dataset holds x, y "
                                f"and optionally x_test, y_test")
        if ("x_test" in names) != ("y_test" in names):
            raise DataError(f"{path}: x_test and y_test go together; it holds only one")
        try:
            return {name: archive[name] for name in names}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DataError(f"{path}: a damaged array ({e})") from None


def _npz_images(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    """Images N x H x W or N x H x W x C (channels last) as (N, C, H, W)."""
    if x.dtype != np.uint8:
        raise DataError(f"{path}: {name} is {x.dtype}; images must be uint8 (0..255)")
    if x.ndim == 3:
        images = x[:, None]
    elif x.ndim == 4 and 1 <= x.shape[3] <= 4:
        images = x.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: {name} has shape {x.shape}; images are N x H x W, or "
                        f"N x H x W x C with the channels last (C 1..4)")
    if 0 in images.shape:
        raise DataError(f"{path}: {name} of shape {x.shape} holds no image")
    return np.ascontiguousarray(images)


def _npz_labels(path: Path, name: str, y: np.ndarray, n: int,
                classes: int | None) -> tuple[np.ndarray, int]:
    """Labels checked against ``n`` images. Without ``classes`` (the training labels) K is
    the largest label + 1 and every class 0..K-1 must have an image."""
    if y.shape != (n,):
        raise DataError(f"{path}: {name} has shape {y.shape}; expected ({n},), one label per "
                        f"image")
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: {name} is {y.dtype}; labels are integers 0..K-1")
    labels = y.astype(np.int64)
    if (labels < 0).any():
        i = int(np.argmax(labels < 0))
        raise DataError(f"{path}: {name}[{i}] is {labels[i]}; labels are 0..K-1")
    if classes is None:
        present = np.unique(labels)
        classes = int(present[-1]) + 1
        if len(present) != classes:
            gap = int(np.flatnonzero(present != np.arange(len(present)))[0])
            raise DataError(f"{path}: {name} has no label {gap}; the labels must be 0..K-1, "
                            f"every class with images (K = {classes}: the largest label + 1)")
        if classes < 2:
            raise DataError(f"{path}: {name} holds one class; a dataset needs at least 2")
    elif (labels >= classes).any():
        i = int(np.argmax(labels >= classes))
        raise DataError(f"{path}: {name}[{i}] is {labels[i]}, outside y's classes "
                        f"0..{classes - 1}")
    return labels, classes


DATASETS.add("folder", UserDataset(
    "folder", read_folder, "directory", True,
    "a folder of class folders of images (root/<class>/*.png|jpg, or root/train/<class> "
    "with root/test/<class>)",
    "give it root/train/<class> and root/test/<class> folders"))
DATASETS.add("npz", UserDataset(
    "npz", read_npz, "file", False,
    "an .npz file of uint8 images x (N x H x W [x C]) and integer labels y",
    "add x_test and y_test arrays to the file"))
