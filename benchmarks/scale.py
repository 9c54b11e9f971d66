"""How the read-only commands scale with a study's size: wall time and peak memory of
`study status`, `analyze`, `report` and `export` on SQLite studies of 1k, 10k and 100k completed
trials, and each as a ratio against 1k.

The studies are synthetic: one tiny real study (4 trials on synthetic data) is run, then its
first completed trial is cloned N times by SQL with varied accuracy, mean distance, MBD, params
and hash (no training). They are cached in --work.

    python benchmarks/scale.py                          # 1k, 10k, 100k (about 10 min, 1.3 GB disk)
    python benchmarks/scale.py --sizes 1000 10000       # quicker

Not measured here yet (issue 26): worker scheduling overhead with 1-64 workers, PostgreSQL.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "scale"
SEED_CONFIG = f"""
name = "{NAME}"
trials = 4
[search_space]
name = "free"
layers = [6]
[data]
name = "synthetic"
train_size = 256
val_size = 128
[architecture]
growth = 4
bottleneck = false
[training]
epochs = 1
batch_size = 64
[sampler]
name = "random"
"""
COMMANDS = {
    "study status": ["study", "status", NAME],
    "analyze": ["analyze", NAME],
    "report": ["report", NAME, "--out", "{work}/report.html"],
    "export": ["export", NAME, "--out", "{work}/export.json"],
}
# Runs a command and prints its peak resident memory (KB): the wrapper's only child is it.
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], "
        "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN)"
        ".ru_maxrss); sys.exit(r.returncode)")


def skipnas(*args: str) -> list[str]:
    return [sys.executable, "-m", "nas.cli", *args]


def seed_study(work: Path) -> Path:
    """A tiny real study to clone from (trained once, cached)."""
    db = work / "seed.db"
    if not db.exists():
        config = work / "seed.toml"
        config.write_text(SEED_CONFIG.replace(
            f'name = "{NAME}"\n', f'name = "{NAME}"\nstorage = "sqlite:///{db}"\n', 1))
        subprocess.run(skipnas("study", "start", str(config), "-q"), check=True, cwd=ROOT,
                       env={**os.environ, "SKIPNAS_OFFLINE": "1"})
    return db


def clone(seed: Path, out: Path, n: int) -> None:
    """A copy of ``seed`` holding ``n`` completed trials: its first completed trial cloned by
    SQL with varied accuracy, distances, params and hash."""
    shutil.copy(seed, out)
    db = sqlite3.connect(out)
    rng = random.Random(0)
    src, study_id, start, complete = db.execute(
        "select trial_id, study_id, datetime_start, datetime_complete from trials "
        "where state = 'COMPLETE' order by trial_id limit 1").fetchone()
    user = db.execute("select key, value_json from trial_user_attributes where trial_id = ?",
                      (src,)).fetchall()
    system = db.execute("select key, value_json from trial_system_attributes where trial_id=?",
                        (src,)).fetchall()
    params = db.execute("select param_name, distribution_json from trial_params "
                        "where trial_id = ?", (src,)).fetchall()
    number = db.execute("select count(*) from trials").fetchone()[0]
    for k in range(n - number):
        tid = db.execute("insert into trials(number, study_id, state, datetime_start, "
                         "datetime_complete) values (?, ?, 'COMPLETE', ?, ?)",
                         (number + k, study_id, start, complete)).lastrowid
        accuracy = rng.random()
        db.execute("insert into trial_values(trial_id, objective, value, value_type) "
                   "values (?, 0, ?, 'FINITE')", (tid, accuracy))
        varied = {"hash": json.dumps(f"{rng.getrandbits(64):016x}"),
                  "mean_distance": json.dumps(1 + rng.random()),
                  "mbd": json.dumps(rng.randint(2, 5)),
                  "params": json.dumps(4000 + rng.randint(0, 500))}
        db.executemany("insert into trial_user_attributes(trial_id, key, value_json) "
                       "values (?, ?, ?)", [(tid, key, varied.get(key, v)) for key, v in user])
        db.executemany("insert into trial_system_attributes(trial_id, key, value_json) "
                       "values (?, ?, ?)", [(tid, key, v) for key, v in system])
        db.executemany("insert into trial_params(trial_id, param_name, param_value, "
                       "distribution_json) values (?, ?, ?, ?)",
                       [(tid, name, rng.random(), d) for name, d in params])
    db.commit()
    db.close()


def measure(db: Path, work: Path) -> dict[str, tuple[float, int]]:
    """{command: (seconds, peak KB)} on the study in ``db``."""
    out = {}
    for label, args in COMMANDS.items():
        argv = [a.format(work=work) for a in args] + ["--storage", f"sqlite:///{db}"]
        t = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", PEAK, *skipnas(*argv)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        out[label] = (time.perf_counter() - t, int(run.stdout.split()[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/skipnas_scale"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    seed = seed_study(args.work)
    results = {}
    for n in args.sizes:
        db = args.work / f"study_{n}.db"
        if not db.exists():
            t = time.perf_counter()
            clone(seed, db, n)
            print(f"built {db} ({n} trials) in {time.perf_counter() - t:.0f} s", flush=True)
        results[n] = measure(db, args.work)
        print(f"{n} trials: " + ", ".join(f"{k} {s:.1f} s / {kb / 1024:.0f} MB"
                                         for k, (s, kb) in results[n].items()), flush=True)
    base = results[args.sizes[0]]
    print("\n| command | " + " | ".join(f"{n:,} trials" for n in args.sizes)
          + f" | ratio {args.sizes[-1]:,} / {args.sizes[0]:,} |")
    print("|---|" + "---|" * (len(args.sizes) + 1))
    for label in COMMANDS:
        cells = [f"{results[n][label][0]:.1f} s, {results[n][label][1] / 1024:.0f} MB"
                 for n in args.sizes]
        ratio = results[args.sizes[-1]][label][0] / base[label][0]
        print(f"| `{label}` | " + " | ".join(cells) + f" | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
