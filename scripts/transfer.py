"""The transfer study: a confirmed study's patterns scaled up and trained fully with
`skipnas train`, as a user would, then compared with the study's own ranking.

    python scripts/transfer.py run CONFIG       # resumable: run it again after a stop
    python scripts/transfer.py publish CONFIG   # tables, figure and numbers for the README

Each (pattern, seed) run writes runs/NAME-seedS/{spec.json, weights.pt, result.json}; a run
with result.json is done, one with only a checkpoint resumes mid-epoch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from nas.results.transfer import TransferConfig

SKIPNAS = [sys.executable, "-m", "nas.cli"]


def _flags(train: dict[str, object]) -> list[str]:
    return [part for key, value in train.items()
            for part in (f"--{key.replace('_', '-')}", str(value))]


def _log(cfg: TransferConfig, line: str) -> None:
    stamped = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"
    print(stamped, flush=True)
    with open(cfg.out / "run.log", "a", encoding="utf-8") as f:
        f.write(stamped + "\n")


def run(config: str) -> None:
    """Export the patterns and train every (pattern, seed) not yet done, ``workers`` at once."""
    cfg = TransferConfig.load(config)
    (cfg.out / "specs").mkdir(parents=True, exist_ok=True)
    for name, trial in cfg.patterns:
        if not cfg.spec_path(name).is_file():
            subprocess.run([*SKIPNAS, "export", cfg.source, "--trial", str(trial),
                            "--out", str(cfg.spec_path(name))], check=True)
    jobs = [(name, seed) for name, _ in cfg.patterns for seed in cfg.seeds
            if not (cfg.run_dir(name, seed) / "result.json").is_file()]
    _log(cfg, f"run {config}: {len(jobs)} of {len(cfg.patterns) * len(cfg.seeds)} runs to go")
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


def publish(config: str) -> None:
    """summary.json and transfer.png in the study's folder; print the README's numbers."""
    from nas.results.report import write_png
    from nas.results.transfer import source_numbers, summarise, tables, transfer_figure
    from nas.text_tables import markdown_table

    cfg = TransferConfig.load(config)
    confirmed, winner = source_numbers(cfg)
    summary = summarise(cfg, confirmed, winner)
    write_png(transfer_figure(summary), cfg.out / "transfer.png")
    patterns, versus = tables(summary)
    print(markdown_table(*patterns) + "\n\n" + markdown_table(*versus) + "\n")
    rho = summary.spearman
    print(f"- Spearman confirmed mean vs full-scale mean over {len(summary.rows)} patterns: "
          f"{rho.value:+.2f} {rho.interval('+.2f')} (bootstrap over seeds), exact permutation "
          f"p = {summary.spearman_p:.3f}; brief accuracy vs full-scale mean: "
          f"{summary.spearman_brief:+.2f}")
    print(f"- full scale, do the patterns differ at all: F test p = {summary.design.p_value:.3f} "
          f"(pooled seed std {summary.design.residual_std:.4f}, {summary.design.df} df)")
    print(f"- {summary.seconds_per_epoch:.0f} s per epoch (median, one thread a run); "
          f"{summary.train_hours:.2f} h of training in all; "
          f"{summary.wall_hours:.2f} h wall clock")


if __name__ == "__main__":
    {"run": run, "publish": publish}[sys.argv[1]](*sys.argv[2:])
