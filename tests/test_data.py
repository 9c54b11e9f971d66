"""Dataset loaders on small files written here in the official formats."""
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.engine.datasets import DATASETS
from nas.engine.loader import augment, batches, load_data
from nas.engine.run_config import DataConfig
from nas.errors import DataError, UserError
from tests.testing import write_cifar

FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def make_idx_dir(root: Path, n: int = 60, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    ext = ".gz" if gz else ""
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", x, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", y, gz)
    return x, y


@pytest.mark.parametrize("gz", [True, False])
def test_idx_loader_round_trip(tmp_path, gz):
    x, y = make_idx_dir(tmp_path, gz=gz)
    images, labels = DATASETS["mnist"].load(tmp_path, "train")
    assert images.shape == (60, 1, 28, 28)
    assert np.array_equal(images[:, 0], x) and np.array_equal(labels, y)


def test_idx_corrupt_file_is_a_clear_error(tmp_path):
    make_idx_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path) as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:-100])  # truncated
    with pytest.raises(DataError, match="corrupt IDX file"):
        DATASETS["mnist"].load(tmp_path, "train")
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        DATASETS["mnist"].load(tmp_path, "train")
    write_idx(path, np.zeros((3, 2), np.uint8), gz=True)
    with pytest.raises(DataError, match="do not match"):
        DATASETS["mnist"].load(tmp_path, "train")


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(DataError) as e:
        load_data("mnist", root=tmp_path / "nowhere")
    message = str(e.value)
    assert "nowhere" in message and "data-home" in message and "MNIST IDX files" in message


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_loader(tmp_path, hundred):
    x = write_cifar(tmp_path, hundred=hundred)
    name = "cifar100" if hundred else "cifar10"
    images, labels = DATASETS[name].load(tmp_path, "train")
    batches_ = 1 if hundred else 5
    assert images.shape == (20 * batches_, 3, 32, 32)
    assert np.array_equal(images[:20].reshape(20, -1), x)
    assert labels[:3].tolist() == [0, 1, 2]
    test_images, _ = DATASETS[name].load(tmp_path, "test")
    assert len(test_images) == 20


class _Payload:
    """A pickle that runs code when loaded by a plain pickle.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_cifar_batch_cannot_run_code(tmp_path):
    import pickle

    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": [0]}))
    with pytest.raises(DataError, match="posix.system is not allowed in a CIFAR batch"):
        DATASETS["cifar10"].load(tmp_path, "train")
    assert not marker.exists()
    batch.write_bytes(pickle.dumps([1, 2]))  # well-formed pickle, wrong contents
    with pytest.raises(DataError, match="corrupt CIFAR batch"):
        DATASETS["cifar10"].load(tmp_path, "train")


def test_a_corrupt_gzip_body_is_a_clear_error(tmp_path):
    make_idx_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\x00" * 64  # damage the deflate stream
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="cannot read"):
        DATASETS["mnist"].load(tmp_path, "train")


def test_cifar_corrupt_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="data_batch_3: corrupt CIFAR batch"):
        DATASETS["cifar10"].load(tmp_path, "train")


def test_svhn_loader(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (32, 32, 3, 15), dtype=np.uint8)
    y = (np.arange(15) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10, 10 meaning digit 0
    savemat(tmp_path / "train_32x32.mat", {"X": X, "y": y})
    images, labels = DATASETS["svhn"].load(tmp_path, "train")
    assert images.shape == (15, 3, 32, 32)
    assert np.array_equal(images[4], X[:, :, :, 4].transpose(2, 0, 1))
    assert labels[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 but truncated")
    with pytest.raises(DataError, match="corrupt SVHN file"):
        DATASETS["svhn"].load(tmp_path, "test")


def test_split_sizes_normalisation_and_determinism(tmp_path):
    make_idx_dir(tmp_path, n=100)
    a = load_data("mnist", root=tmp_path, train_size=50, val_size=20, seed=3, with_test=True,
                  test_size=30)
    b = load_data("mnist", root=tmp_path, train_size=50, val_size=20, seed=3)
    assert (len(a.train), len(a.val), len(a.test)) == (50, 20, 30)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.labels, b.val.labels)
    normalised = a.normalise(a.train.images)
    assert normalised.mean().abs() < 1e-4 and (normalised.std() - 1).abs() < 1e-2
    frac = load_data("mnist", root=tmp_path, val_size=0.25)
    assert (len(frac.train), len(frac.val)) == (75, 25)
    with pytest.raises(DataError, match="train_size 90 must be in 1..80"):
        load_data("mnist", root=tmp_path, train_size=90, val_size=20)


def test_data_config_rejects_unknown_dataset():
    with pytest.raises(UserError, match="unknown dataset 'cifar11'"):
        DataConfig(name="cifar11")


def test_augment_crop_and_flip_are_shifts_of_the_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6)
    out = augment(x, "crop_flip", torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    assert torch.equal(augment(x, "none", torch.Generator()), x)
    # Every output pixel is either zero padding or a pixel of the same image.
    for i in range(2):
        values = set(out[i].flatten().tolist()) - {0}
        assert values <= set(x[i].flatten().tolist())


def test_batches_cover_the_split_once():
    from nas.engine.loader import Split
    split = Split(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
    seen = torch.cat([y for _, y in batches(split, 3, shuffle=True,
                                            generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    assert sum(len(y) for _, y in batches(split, 3, shuffle=False, drop_last=True)) == 9


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist missing")
def test_real_fashion_mnist_from_debian_package():
    data = load_data("fashion-mnist", train_size=1000, val_size=500, with_test=True)
    assert data.train.images.shape == (1000, 1, 28, 28)
    assert len(data.test) == 10000
    assert set(data.val.labels.tolist()) == set(range(10))


def test_a_cifar_batch_whose_labels_nest_one_shared_list_is_refused(tmp_path):
    """F11: pickle shares one list by reference, so a few KB stand for 10^9 labels; numpy
    used to walk them all (a hang, then out of memory)."""
    write_cifar(tmp_path)
    leaf = [0] * 1000
    bomb = [[leaf] * 1000] * 20  # 20 "labels", each a million-item list of lists
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    batch.write_bytes(pickle.dumps({b"data": np.zeros((20, 3072), np.uint8), b"labels": bomb}))
    assert batch.stat().st_size < 100_000
    with pytest.raises(DataError, match="data_batch_4: corrupt CIFAR batch .*the labels are "
                                        "not 20 integers, one per image"):
        DATASETS["cifar10"].load(tmp_path, "train")


def test_an_idx_file_declaring_more_than_the_cap_is_refused_unread(tmp_path):
    """F11: a small gzip that inflates to gigabytes was read whole (a MemoryError traceback);
    now only what the header declares is read, and a header may declare at most 1 GiB."""
    make_idx_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big")
                                                  for d in (65536, 256, 256)))
        for _ in range(64):  # 64 MiB of zeros, 64 KiB compressed: only the header is read
            f.write(bytes(1 << 20))
    with pytest.raises(DataError, match=r"declares shape \(65536, 256, 256\), 4294967296 "
                                        r"bytes; an IDX file may hold at most 1073741824"):
        DATASETS["mnist"].load(tmp_path, "train")
