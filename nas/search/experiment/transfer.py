"""Patterns of a finished study trained again by `skipnas train`, as a user would: each
(pattern, seed) a run folder with the spec, the weights and result.json. A run with
result.json is done; one with only a checkpoint resumes mid-epoch; so the same call goes on
after any stop. The transfer study (scaled up, trained fully) and the controlled principle
study's higher-fidelity runs use it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError, UserError
from ..config import read_toml

SKIPNAS = [sys.executable, "-m", "nas.cli"]


@dataclass(frozen=True)
class TransferConfig:
    """A transfer study's config (studies/transfer/*.toml)."""
    source: str                              # the confirmed study's config
    out: Path
    workers: int
    seeds: tuple[int, ...]
    patterns: tuple[tuple[str, int], ...]    # (name, trial of the source study), in run order
    train: dict[str, Any]                    # flags of `skipnas train`

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError("workers: must be >= 1")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: {list(self.seeds)} repeats a seed")
        slugs = [self.slug(name) for name, _ in self.patterns]
        if len(set(slugs)) != len(slugs):
            raise ConfigError("patterns: two names share a run folder (names differ in more "
                              "than spaces)")

    @classmethod
    def load(cls, path: str | Path) -> "TransferConfig":
        """The config at ``path``; a missing key or a bad value is one clear error."""
        raw = read_toml(path)
        try:
            cfg = cls(source=raw["source"], out=Path(raw["out"]), workers=int(raw["workers"]),
                      seeds=tuple(int(s) for s in raw["seeds"]),
                      patterns=tuple((p["name"], int(p["trial"])) for p in raw["patterns"]),
                      train=dict(raw["train"]))
        except KeyError as e:
            raise ConfigError(f"{path}: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: {e}") from None
        if not cfg.seeds or not cfg.patterns:
            raise ConfigError(f"{path}: needs at least one seed and one pattern")
        return cfg

    def slug(self, name: str) -> str:
        return name.replace(" ", "")

    def run_dir(self, name: str, seed: int) -> Path:
        return self.out / "runs" / f"{self.slug(name)}-seed{seed}"

    def spec_path(self, name: str) -> Path:
        return self.out / "specs" / f"{self.slug(name)}.json"


def _flags(train: dict[str, object]) -> list[str]:
    return [part for key, value in train.items()
            for part in (f"--{key.replace('_', '-')}", str(value))]


def _log(cfg: TransferConfig, line: str) -> None:
    stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"
    print(stamped, flush=True)
    with open(cfg.out / "run.log", "a", encoding="utf-8") as f:
        f.write(stamped + "\n")


def export_specs(cfg: TransferConfig) -> None:
    """Each pattern's spec, exported from its trial of the source study (once)."""
    (cfg.out / "specs").mkdir(parents=True, exist_ok=True)
    for name, trial in cfg.patterns:
        if not cfg.spec_path(name).is_file():
            done = subprocess.run([*SKIPNAS, "export", cfg.source, "--trial", str(trial),
                                   "--out", str(cfg.spec_path(name))])
            if done.returncode != 0:  # skipnas said why, in one line, above
                raise UserError(f"{name}: trial {trial} of {cfg.source} could not be exported")


def train_all(cfg: TransferConfig) -> None:
    """Train every (pattern, seed) not yet done with `skipnas train` (specs exported first),
    ``workers`` runs at once, one thread each; one error at the end when any run failed."""
    export_specs(cfg)
    jobs = [(name, seed) for name, _ in cfg.patterns for seed in cfg.seeds
            if not (cfg.run_dir(name, seed) / "result.json").is_file()]
    _log(cfg, f"{cfg.out}: {len(jobs)} of {len(cfg.patterns) * len(cfg.seeds)} runs to go")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def one(job: tuple[str, int]) -> None:
        name, seed = job
        folder = cfg.run_dir(name, seed)
        resume = ["--resume"] if (folder / "checkpoint.pt").is_file() else []
        cmd = [*SKIPNAS, "train", str(cfg.spec_path(name)), *_flags(cfg.train), "--seed",
               str(seed), "--test", "--json", "--quiet", "--checkpoint-every", "200",
               "--out", str(folder), *resume]
        _log(cfg, f"start {name} seed {seed}{' (resuming)' if resume else ''}")
        started = time.monotonic()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            _log(cfg, f"FAILED {name} seed {seed} (exit {done.returncode}): "
                      f"{done.stderr.strip().splitlines()[-1:]}")
            return
        result = json.loads(done.stdout)
        result.update(name=name, seed=seed, wall_seconds=time.monotonic() - started,
                      resumed=bool(resume))
        tmp = folder / "result.json.tmp"
        tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
        tmp.replace(folder / "result.json")
        _log(cfg, f"done {name} seed {seed}: test {result['test_accuracy']:.4f} in "
                  f"{result['wall_seconds']:.0f} s")

    with ThreadPoolExecutor(cfg.workers) as pool:
        list(pool.map(one, jobs))
    failed = [job for job in jobs if not (cfg.run_dir(*job) / "result.json").is_file()]
    if failed:
        raise UserError(f"{len(failed)} of {len(jobs)} runs failed (see {cfg.out / 'run.log'}); "
                        f"the same command runs them again")
