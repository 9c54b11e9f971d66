"""The user's own data: an image folder and an npz file, read, checked and cached; bad data
refused in one line; a study, confirm, export and `skipnas train` on them."""
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nas.engine.datasets as datasets
from nas.cli import main
from nas.engine.datasets import DatasetInfo, cache_path, read_folder, read_npz
from nas.engine.run_config import DataConfig
from nas.errors import ConfigError, DataError, UserError
from nas.search.config import config_from_dict
from tests.testing import image_folder, run_cli, tiny_raw, write_toml


def folder_config(tmp_path: Path, root: Path, **data) -> dict:
    """A tiny study config on the image folder ``root``."""
    raw = tiny_raw(tmp_path, trials=2, training={"epochs": 1, "batch_size": 8},
                   confirm={"top": 1, "seeds": 2})
    raw["data"] = {"name": "folder", "root": str(root), "val_size": 6, **data}
    return raw


def info_of(name: str, root: Path | str) -> DatasetInfo:
    return DataConfig(name, root=str(root)).info


# --- an image folder ------------------------------------------------------------------------

def test_a_folder_reads_as_its_sorted_class_folders(tmp_path):
    root = image_folder(tmp_path / "pets", classes=3, per_class=4, size=12, channels=3)
    data = read_folder(root)
    x, y = data.train
    assert x.shape == (12, 3, 12, 12) and x.dtype == np.uint8
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and data.classes == ("c000", "c001", "c002")
    assert data.test is None
    # c001's files by name: 0.png 1.jpg 2.png 3.jpg; a PNG is read pixel for pixel
    png = np.asarray(Image.open(root / "c001" / "0.png")).transpose(2, 0, 1)
    assert np.array_equal(x[4], png)
    info = DataConfig("folder", root=str(root)).info
    assert (info.input_shape, info.num_classes, info.augment) == ((3, 12, 12), 3, "none")


def test_a_hundred_classes_keep_their_order(tmp_path):
    root = image_folder(tmp_path / "many", classes=100, per_class=2, size=8, channels=1)
    info = DataConfig("folder", root=str(root)).info
    assert (info.input_shape, info.num_classes) == ((1, 8, 8), 100)
    data = read_folder(root)
    assert data.classes[37] == "c037" and data.train[1].tolist() == sorted(list(range(100)) * 2)


def test_greyscale_is_one_channel_and_a_colour_image_makes_all_rgb(tmp_path):
    root = image_folder(tmp_path / "grey", classes=2, per_class=2, size=6, channels=1)
    assert read_folder(root).train[0].shape == (4, 1, 6, 6)
    Image.new("RGB", (6, 6), (10, 20, 30)).save(root / "c001" / "9.png")
    x = read_folder(root).train[0]
    assert x.shape == (5, 3, 6, 6)
    assert (x[4] == np.array([10, 20, 30])[:, None, None]).all()
    assert (x[0, 0] == x[0, 1]).all() and (x[0, 1] == x[0, 2]).all()  # grey, repeated


def test_mixed_sizes_need_image_size_which_resizes_them(tmp_path):
    root = image_folder(tmp_path / "mixed", classes=2, per_class=2, size=12)
    Image.new("RGB", (16, 10)).save(root / "c001" / "9.png")  # 16 wide, 10 high
    with pytest.raises(DataError) as e:
        read_folder(root)
    assert str(e.value) == (f"{root.resolve()}: images of different sizes "
                            f"({root.resolve() / 'c000' / '0.png'} is 12x12, "
                            f"{root.resolve() / 'c001' / '9.png'} 16x10 pixels); set "
                            f"data.image_size (--image-size) to resize them all")
    assert read_folder(root, (8, 10)).train[0].shape == (5, 3, 8, 10)
    bundle = DataConfig("folder", root=str(root), image_size=8, val_size=1).load()
    assert bundle.info.input_shape == (3, 8, 8) and len(bundle.train) == 4


def test_the_cache_is_used_until_the_folder_changes(tmp_path, monkeypatch, caplog):
    root = image_folder(tmp_path / "pets", classes=2, per_class=3)
    decoded = []
    real = datasets._decode
    monkeypatch.setattr(datasets, "_decode", lambda path, size: decoded.append(path) or
                        real(path, size))
    first = read_folder(root)
    assert len(decoded) == 6 and cache_path(root, None).is_file()
    assert cache_path(root, None).parent == Path(os.environ["SKIPNAS_DATA"]) / "cache"

    def fresh_read(size=None):  # as another process reads it: no in-process memo
        datasets._folder_data.cache_clear()
        decoded.clear()
        return read_folder(root, size)

    again = fresh_read()
    assert decoded == [] and np.array_equal(again.train[0], first.train[0])
    assert again.classes == first.classes
    os.utime(root / "c000" / "1.jpg", ns=(0, 0))  # a changed file is read again
    fresh_read()
    assert len(decoded) == 6
    image_folder(tmp_path / "more", classes=1, per_class=1)
    (tmp_path / "more" / "c000" / "0.png").rename(root / "c001" / "new.png")  # a new one
    assert fresh_read().train[1].tolist() == [0, 0, 0, 1, 1, 1, 1] and len(decoded) == 7
    assert fresh_read((4, 4)).train[0].shape == (7, 3, 4, 4) and len(decoded) == 7
    assert cache_path(root, (4, 4)) != cache_path(root, None)  # a file per image size
    fresh_read()
    assert decoded == []
    cache_path(root, None).write_bytes(b"garbage")  # damaged: said, and read again
    with caplog.at_level(logging.WARNING):
        assert fresh_read().train[0].shape == (7, 3, 12, 12) and len(decoded) == 7
    assert "cannot read the cache" in caplog.text
    assert [p.name for p in cache_path(root, None).parent.iterdir()
            if p.suffix == ".part"] == []  # written atomically: no temporary file left


def test_a_train_and_test_layout_gives_a_test_split(tmp_path):
    root = image_folder(tmp_path / "split", classes=3, per_class=4, test_per_class=2)
    data = read_folder(root)
    assert data.train[0].shape == (12, 3, 12, 12) and data.test is not None
    assert data.test[1].tolist() == [0, 0, 1, 1, 2, 2]
    bundle = DataConfig("folder", root=str(root), val_size=2).load(with_test=True)
    assert len(bundle.test) == 6 and len(bundle.train) == 10
    plain = image_folder(tmp_path / "plain", classes=2, per_class=3)
    with pytest.raises(DataError, match=f"{plain} has no test split; give it "
                                        f"root/train/<class> and root/test/<class> folders"):
        DataConfig("folder", root=str(plain), val_size=1).load(with_test=True)


def bad_folder(tmp_path: Path, how: str) -> tuple[Path, str]:
    """A folder with one problem, and what its error says."""
    root = image_folder(tmp_path / "bad", classes=3, per_class=2)
    if how == "empty class":
        (root / "c003").mkdir()
        return root, f"{root.resolve() / 'c003'}: an empty class folder"
    if how == "corrupt image":
        (root / "c001" / "1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        return root, f"{root.resolve() / 'c001' / '1.jpg'}: not a readable image"
    if how == "truncated image":
        png = root / "c002" / "0.png"
        png.write_bytes(png.read_bytes()[:60])
        return root, f"{png.resolve()}: not a readable image"
    if how == "one class":
        single = image_folder(tmp_path / "single", classes=1, per_class=2)
        return single, f"{single.resolve()}: 1 class folder; a folder dataset needs one folder " \
                       f"of images per class, at least 2"
    if how == "stray file":
        (root / "labels.csv").write_text("a,b\n")
        return root, f"{root.resolve() / 'labels.csv'}: not a folder"
    if how == "not an image":
        (root / "c000" / "notes.txt").write_text("hi")
        return root, f"{root.resolve() / 'c000' / 'notes.txt'}: not a .png, .jpg or .jpeg file"
    if how == "test class without training":
        split = image_folder(tmp_path / "split", classes=2, per_class=2, test_per_class=1)
        (split / "test" / "zebra").mkdir()
        Image.new("RGB", (12, 12)).save(split / "test" / "zebra" / "0.png")
        return split, f"{split.resolve() / 'test' / 'zebra'}: a test class with no training " \
                      f"folder"
    if how == "missing":
        return tmp_path / "nowhere", f"root: '{tmp_path / 'nowhere'}' is not a directory"
    raise AssertionError(how)


BAD_FOLDERS = ["empty class", "corrupt image", "truncated image", "one class", "stray file",
               "not an image", "test class without training", "missing"]


@pytest.mark.parametrize("how", BAD_FOLDERS)
def test_bad_folders_are_one_clear_line(tmp_path, how):
    root, message = bad_folder(tmp_path, how)
    with pytest.raises(UserError) as e:
        info_of("folder", root)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_hidden_files_are_not_data(tmp_path):
    root = image_folder(tmp_path / "mac", classes=2, per_class=2)
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "c000" / ".DS_Store").write_bytes(b"\0")
    assert read_folder(root).train[0].shape == (4, 3, 12, 12)


# --- an npz file ----------------------------------------------------------------------------

def test_an_npz_file_reads_with_its_classes_and_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 8, 6, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 3] * 2 + [0, 1])
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:4], y_test=np.array([3, 2, 1, 0]))
    data = read_npz(tmp_path / "d.npz")
    assert np.array_equal(data.train[0], x.transpose(0, 3, 1, 2)) and data.train[1].tolist() == \
        y.tolist()
    assert data.classes == ("0", "1", "2", "3") and data.test is not None
    bundle = DataConfig("npz", root=str(tmp_path / "d.npz"), val_size=2).load(with_test=True)
    assert (bundle.info.input_shape, bundle.info.num_classes) == ((3, 8, 6), 4)
    assert len(bundle.test) == 4 and len(bundle.train) == 8
    np.savez_compressed(tmp_path / "g.npz", x=x[..., 0], y=y.astype(np.uint8))
    grey = DataConfig("npz", root=str(tmp_path / "g.npz")).info
    assert (grey.input_shape, grey.num_classes) == ((1, 8, 6), 4)
    with pytest.raises(DataError, match="g.npz has no test split; add x_test and y_test"):
        DataConfig("npz", root=str(tmp_path / "g.npz"), val_size=2).load(with_test=True)


X = np.zeros((6, 4, 4), np.uint8)
Y = np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("arrays, message", [
    (dict(x=X.astype(np.float32), y=Y), "x is float32; images must be uint8 (0..255)"),
    (dict(x=np.zeros((6, 3, 8, 8), np.uint8), y=Y),
     "x has shape (6, 3, 8, 8); images are N x H x W, or N x H x W x C with the channels last"),
    (dict(x=X[:, 0], y=Y), "x has shape (6, 4); images are N x H x W"),
    (dict(x=X, y=np.array([0, -1, 2, 0, 1, 2])), "y[1] is -1; labels are 0..K-1"),
    (dict(x=X, y=Y.astype(float)), "y is float64; labels are integers 0..K-1"),
    (dict(x=X, y=Y + 1), "y has no label 0; the labels must be 0..K-1, every class with "
                         "images (K = 4: the largest label + 1)"),
    (dict(x=X, y=np.array([0, 1, 3, 0, 1, 3])), "y has no label 2"),
    (dict(x=X, y=np.zeros(6, int)), "y holds one class; a dataset needs at least 2"),
    (dict(x=X, y=Y[:5]), "y has shape (5,); expected (6,), one label per image"),
    (dict(x=X, y=Y, x_test=X), "x_test and y_test go together"),
    (dict(x=X, y=Y, names=np.array(["a"])), "an array 'names'; an npz dataset holds x, y"),
    (dict(x=X), "no array 'y' (it holds x)"),
    (dict(x=X, y=Y, x_test=X[:1], y_test=np.array([5])), "y_test[0] is 5, outside y's "
                                                         "classes 0..2"),
    (dict(x=X, y=Y, x_test=np.zeros((1, 5, 4), np.uint8), y_test=np.array([1])),
     "x_test's images are (1, 5, 4) (C, H, W), x's (1, 4, 4)"),
])
def test_bad_npz_files_are_one_clear_line(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as e:
        info_of("npz", tmp_path / "bad.npz")
    assert str(e.value).startswith(f"{(tmp_path / 'bad.npz').resolve()}: {message}")


def test_a_file_that_is_no_npz_archive_is_refused(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match="text.npz: not a readable .npz file"):
        info_of("npz", tmp_path / "text.npz")
    np.save(tmp_path / "one.npy", X)
    with pytest.raises(DataError, match=r"one.npy: one array, not an .npz archive of x and y"):
        info_of("npz", tmp_path / "one.npy")
    with pytest.raises(UserError, match="root: .*missing.npz' is not a file"):
        info_of("npz", tmp_path / "missing.npz")
    with pytest.raises(UserError, match="root: the npz dataset reads an .npz file .* give its "
                                        "path"):
        info_of("npz", "")


# --- configs and the command line -----------------------------------------------------------

def test_a_study_config_takes_its_shape_and_classes_from_the_folder(tmp_path):
    root = image_folder(tmp_path / "pets", classes=4, per_class=3, size=(10, 14), channels=1)
    cfg = config_from_dict(folder_config(tmp_path, root), "test.toml")
    assert (cfg.architecture.input_shape, cfg.architecture.num_classes) == ((1, 10, 14), 4)
    resized = config_from_dict(folder_config(tmp_path, root, image_size=[8, 9]), "test.toml")
    assert resized.architecture.input_shape == (1, 8, 9) and resized.data.image_hw == (8, 9)


@pytest.mark.parametrize("data, message", [
    ({"name": "cifar10", "image_size": 32},
     "test.toml: data.image_size: only the folder dataset resizes its images"),
    ({"name": "folder", "image_size": 0}, "test.toml: data.image_size: must be a positive size"),
    ({"name": "folder", "image_size": [8, 8, 8]}, "test.toml: data.image_size: expected "),
    ({"name": "npz", "image_size": 8}, "test.toml: data.image_size: only the folder dataset "
                                       "resizes its images; npz's are the size they are"),
    ({"name": "folder"}, "test.toml: data.root: the folder dataset reads a folder of class "
                         "folders"),
    ({"name": "npz", "root": "/nonexistent.npz"},
     "test.toml: data.root: '/nonexistent.npz' is not a file"),
])
def test_bad_data_settings_are_config_errors(tmp_path, data, message):
    raw = tiny_raw(tmp_path)
    raw["data"] = data
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        config_from_dict(raw, "test.toml")


def test_workers_may_keep_the_folder_elsewhere_but_not_another_shape(tmp_path):
    from nas.search.experiment.study import create_study

    root = image_folder(tmp_path / "a" / "pets", classes=3, per_class=2)
    create_study(config_from_dict(folder_config(tmp_path, root, val_size=1) | {"trials": 0}))
    copy = image_folder(tmp_path / "b" / "pets", classes=3, per_class=2)  # another machine's
    create_study(config_from_dict(folder_config(tmp_path, copy, val_size=1) | {"trials": 0}))
    other = image_folder(tmp_path / "c" / "pets", classes=4, per_class=2)
    with pytest.raises(UserError, match="architecture.num_classes is 3 in the study, 4 here"):
        create_study(config_from_dict(folder_config(tmp_path, other, val_size=1) |
                                      {"trials": 0}))


def test_bad_data_is_refused_before_the_study_is_written(tmp_path):
    root, message = bad_folder(tmp_path, "corrupt image")
    path = write_toml(tmp_path / "s.toml", folder_config(tmp_path, root))
    with pytest.raises(ConfigError, match=f"^{path}: {message}"):
        config_from_dict(folder_config(tmp_path, root), str(path))
    out = run_cli("study", "start", str(path), "-q")
    assert out.returncode == 2 and not (tmp_path / "tiny.db").exists()
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"skipnas: error: {path}: {message} (")  # then Pillow's reason


def test_cli_train_refuses_bad_data_in_one_line(tmp_path):
    np.savez(tmp_path / "d.npz", x=X, y=np.array([0, 1, 2, -3, 1, 2]))
    out = run_cli("train", "--template", "log", "--layers", "2", "--dataset", "npz",
                  "--data-dir", str(tmp_path / "d.npz"), "--steps", "1")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"skipnas: error: {(tmp_path / 'd.npz').resolve()}: y[3] is -3; labels are 0..K-1"]
    root = image_folder(tmp_path / "mixed", classes=2, per_class=1)
    Image.new("L", (9, 9)).save(root / "c000" / "z.png")
    out = run_cli("train", "--template", "log", "--layers", "2", "--dataset", "folder",
                  "--data-dir", str(root), "--steps", "1")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "images of different sizes" in out.stderr and "--image-size" in out.stderr


def test_a_study_on_a_folder_confirms_exports_and_trains_fully(tmp_path, capsys):
    root = image_folder(tmp_path / "pets", classes=3, per_class=8, size=12, test_per_class=2)
    path = write_toml(tmp_path / "s.toml", folder_config(tmp_path, root))
    url = f"sqlite:///{tmp_path}/tiny.db"
    assert main(["study", "start", str(path), "-q"]) == 0
    assert main(["confirm", str(path), "-q"]) == 0
    assert main(["export", "tiny", "--storage", url, "--out", str(tmp_path / "best.json")]) == 0
    assert "confirmed: " in capsys.readouterr().out
    spec = json.loads((tmp_path / "best.json").read_text())
    assert spec["origin"]["dataset"] == "folder"
    assert (spec["architecture"]["input_shape"], spec["architecture"]["num_classes"]) == \
        ([3, 12, 12], 3)
    assert main(["train", str(tmp_path / "best.json"), "--dataset", "folder", "--data-dir",
                 str(root), "--steps", "3", "--test", "--json", "-q", "--checkpoint",
                 str(tmp_path / "c.pt")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "folder-pets" and result["steps"] == 3
    assert result["pattern"] == spec["hash"] and result["test_accuracy"] is not None
    # the same spec on another dataset: trained there, with a note
    assert main(["train", str(tmp_path / "best.json"), "--dataset", "synthetic", "--steps",
                 "1", "--checkpoint", str(tmp_path / "d.pt")]) == 0
    assert "was searched on folder; trained here on synthetic" in capsys.readouterr().err


def test_cli_train_a_template_on_an_image_folder_and_an_npz_file(tmp_path, capsys):
    root = image_folder(tmp_path / "pets", classes=3, per_class=12, size=(12, 10))
    assert main(["train", "--template", "log", "--layers", "3", "--growth", "4", "--dataset",
                 "folder", "--data-dir", str(root), "--image-size", "8x6", "--val-size", "6",
                 "--steps", "10", "--batch-size", "8", "--json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 10 and result["val_accuracy"] >= 5 / 6  # it learns the folder
    x = np.random.default_rng(0).integers(0, 256, (12, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(12) % 3, x_test=x[:3], y_test=np.arange(3))
    assert main(["train", "--template", "log", "--layers", "3", "--growth", "4", "--dataset",
                 "npz", "--data-dir", str(tmp_path / "d.npz"), "--val-size", "3", "--steps",
                 "2", "--test", "--json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "npz-d.npz" and result["test_accuracy"] is not None
    assert main(["train", "--template", "log", "--dataset", "npz", "--data-dir",
                 str(tmp_path / "d.npz"), "--image-size", "4"]) == 2
    assert "only the folder dataset resizes its images" in capsys.readouterr().err
