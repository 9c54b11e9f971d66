"""What many tests share (as `optuna.testing`): tiny study configs, the CLI in a subprocess, and
the storages that storage-level tests run on."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nas.search.config import StudyConfig, config_from_dict

POSTGRES = os.environ.get("SKIPNAS_TEST_POSTGRES")  # scripts/test.sh starts a server
STORAGES = ["journal", "sqlite"] + (["postgres"] if POSTGRES else [])
# PYTHONFAULTHANDLER: a CLI process sent SIGABRT prints every thread's stack (see `stacks`).
ENV = {**os.environ, "SKIPNAS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
CLI_TIMEOUT = 600  # seconds; the slowest CLI call of the suite takes about a minute


def url_of(kind: str, folder: Path, stem: str = "s") -> str:
    """A fresh storage of ``kind`` (one of STORAGES) in ``folder``; PostgreSQL's is shared, so
    its tests use fresh study names."""
    return {"journal": f"journal:///{folder}/{stem}.log", "sqlite": f"sqlite:///{folder}/{stem}.db",
            "postgres": POSTGRES or ""}[kind]


def tiny_raw(folder: Path, **changes: Any) -> dict[str, Any]:
    """A study config of seconds-long trials on synthetic data, as parsed TOML. A keyword names a
    top-level key or a section; a section given as a dict updates that section's keys."""
    raw: dict[str, Any] = {
        "name": "tiny", "trials": 4, "storage": f"sqlite:///{folder}/tiny.db",
        "heartbeat_seconds": 1,
        "search_space": {"name": "free", "layers": [6]},
        "data": {"name": "synthetic", "train_size": 1024, "val_size": 256},
        "architecture": {"growth": 6, "bottleneck": False},
        "training": {"epochs": 2, "batch_size": 32},
        "sampler": {"name": "random"},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def tiny_config(folder: Path, **changes: Any) -> StudyConfig:
    """:func:`tiny_raw`, validated as `load_config` validates a file."""
    return config_from_dict(tiny_raw(folder, **changes), "test.toml")


def image_folder(path: Path, classes: int = 3, per_class: int = 4,
                 size: int | tuple[int, int] = 12, channels: int = 3, test_per_class: int = 0,
                 seed: int = 0) -> Path:
    """An image folder (the `folder` dataset) at ``path``: ``classes`` class folders c000,
    c001, ... of ``per_class`` images each, PNG and JPEG in turn, ``size`` pixels (N, or
    (height, width)) of 1 or 3 ``channels``; each class is its own random colour plus noise,
    which a network learns in a few steps. With ``test_per_class``: path/train/<class> and
    path/test/<class>."""
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (classes, channels))
    splits = {"train": per_class, "test": test_per_class} if test_per_class else {"": per_class}
    for split, count in splits.items():
        for c in range(classes):
            folder = path / split / f"c{c:03d}"
            folder.mkdir(parents=True)
            for i in range(count):
                noisy = colours[c] + rng.normal(0, 40, (h, w, channels))
                pixels = np.clip(noisy, 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
                image.save(folder / f"{i}.{'jpg' if i % 2 else 'png'}")
    return path


def write_cifar(root: Path, n: int = 20, hundred: bool = False) -> np.ndarray:
    """CIFAR-10 (or -100) batches of ``n`` random 3x32x32 images each under ``root``, as the
    python-pickle release lays them out; returns the images."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    if hundred:
        folder, files, key = root / "cifar-100-python", ["train", "test"], b"fine_labels"
    else:
        folder, key = root / "cifar-10-batches-py", b"labels"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    folder.mkdir(parents=True)
    for i, f in enumerate(files):
        batch = {b"data": x, key: [int(v) for v in (np.arange(n) + i) % (100 if hundred else 10)]}
        with open(folder / f, "wb") as fh:
            pickle.dump(batch, fh)
    return x


def write_toml(path: Path, raw: dict[str, Any]) -> Path:
    """Write a parsed config (top-level values, then one table per section) as TOML."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):  # an inline table
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(v) if isinstance(v, str) else repr(v)

    lines = [f"{k} = {value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for section, table in raw.items():
        if isinstance(table, dict):
            lines += [f"[{section}]"] + [f"{k} = {value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(*argv: str, timeout: float = CLI_TIMEOUT,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`skipnas ARGV` in a fresh process (offline, one thread), run to the end; one still
    running after ``timeout`` seconds fails the test with its threads' stacks."""
    with subprocess.Popen([sys.executable, "-m", "nas.cli", *argv], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"skipnas {' '.join(argv)} still ran after {timeout} s:\n"
                                 f"{stacks(proc)}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stacks(proc: subprocess.Popen[str]) -> str:
    """The end of a hung CLI process's stderr with the stacks of all its threads (it was started
    with :data:`ENV`, so SIGABRT makes it print them); the process is gone after."""
    proc.send_signal(signal.SIGABRT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # its children hold the pipe: what came so far
        proc.kill()
        return "(its stderr stayed open: no stacks)"
    return (err or "")[-20_000:]
