"""How skipnas scales with a study's size. Two measurements:

- the read-only commands: wall time and peak memory of `study status`, `analyze`, `report` and
  `export` on SQLite studies of 1k, 10k and 100k completed trials, each as a ratio against 1k,
  and of `bench replay` on synthetic tables of about as many rows (every pattern of the
  offsets space at L = 16, 22 and 24, with 2, 2 and 10 seeds: 592, 8472 and 95430 rows; a
  table lists a space, and spaces list at most 10,000 patterns);
- scheduling (--workers): W worker processes whose training is a test double for `train`
  (it sleeps --trial-seconds, the GPU's time, 0 by default; everything else a worker does
  runs) work off 10 x W queued search trials of a study that already holds N trials, on SQLite
  and (--postgres URL, an empty database it may overwrite) on PostgreSQL: per-trial overhead
  from claim to tell less the trial's sleep (median, p99), each worker's cycle from one tell to
  the next (claim, stale sweep and progress included) and trials/s. The workers start together
  once all have imported, and trials that started before every worker had told its first are
  left out: a worker's start (importing torch; its first trial's lazy imports) is not scheduling.

The studies are synthetic: one tiny real study (4 trials on synthetic data) is run, then its
first completed trial is cloned N times by SQL with varied accuracy, mean distance, MBD, params
and hash (no training). They are cached in --work.

    python benchmarks/scale.py                          # 1k, 10k, 100k (~10 min once built, 1.4 GB)
    python benchmarks/scale.py --sizes 1000 10000       # quicker
    python benchmarks/scale.py --sizes 1000 100000 --workers 1 8 32 64 \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/scale    # scheduling
    python benchmarks/scale.py ... --workers 32 --trial-seconds 2   # as with 2 s GPU trials
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
# A benchmark config over every pattern of an offsets space (the table is written, not built).
BENCH_CONFIG = """
name = "scale_bench"
trials = 0
[bench]
seeds = {seeds}
[search_space]
name = "offsets"
layers = [{layers}]
[data]
name = "synthetic"
[architecture]
growth = 4
bottleneck = false
[sampler]
name = "random"
"""
# The offsets spaces (layers, seeds) whose tables have about as many rows as the studies have
# trials.
BENCH_TABLES = {1000: (16, 2), 10_000: (22, 2), 100_000: (24, 10)}
REPLAY_LABEL = "bench replay"
REPLAY = ["--sampler", "random", "uniform", "prior", "--repeats", "3", "--trials", "40",
          "--resamples", "200", "-q"]

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


def bench_table(work: Path, layers: int, seeds: int) -> tuple[Path, int]:
    """A synthetic benchmark (directory, rows) over every pattern of the offsets space at
    ``layers``, ``seeds`` seeds each: accuracy falling with mean distance, plus noise per seed
    (cached)."""
    from nas.search.config import load_config
    from nas.search.experiment.bench import COLUMNS, CONFIG, TABLE
    from search_spaces import distance_stats

    out = work / f"bench_L{layers}_{seeds}"
    if not (out / TABLE).exists():
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(BENCH_CONFIG.format(layers=layers, seeds=list(range(seeds))))
        cfg = load_config(out / CONFIG)
        patterns = cfg.search_space.build().all_patterns()
        if not patterns:
            raise SystemExit(f"the offsets space at L = {layers} is too large to list")
        rng = random.Random(0)
        with (out / "partial.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            for pattern in patterns:
                d = distance_stats(pattern)
                for seed in cfg.bench.seeds:
                    accuracy = min(1.0, max(0.0, 0.9 - 0.05 * d.mean + rng.gauss(0, 0.01)))
                    writer.writerow({
                        "hash": pattern.hash, "seed": seed, "accuracy": accuracy,
                        "connections": pattern.connections, "mbd": d.mbd,
                        "mean_distance": d.mean, "params": "", "flops": "",
                        "train_seconds": "",
                        "pattern": json.dumps(pattern.to_dict(), separators=(",", ":"))})
        (out / "partial.csv").rename(out / TABLE)
    with (out / TABLE).open(encoding="utf-8") as f:
        return out, sum(1 for _ in f) - 1


def measure(db: Path, work: Path, repeats: int) -> dict[str, tuple[float, int]]:
    """{command: (median seconds, peak KB)} over ``repeats`` runs on the study in ``db``, the
    commands taking turns (this machine's speed drifts by up to 1.8x within minutes)."""
    runs: dict[str, list[tuple[float, int]]] = {label: [] for label in COMMANDS}
    for _ in range(repeats):
        for label, args in COMMANDS.items():
            argv = [a.format(work=work) for a in args] + ["--storage", f"sqlite:///{db}"]
            runs[label].append(timed(argv))
    return {label: (statistics.median(s for s, _ in r), max(kb for _, kb in r))
            for label, r in runs.items()}


def timed(argv: list[str]) -> tuple[float, int]:
    """(seconds, peak KB) of `skipnas ARGV`."""
    t = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", PEAK, *skipnas(*argv)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return time.perf_counter() - t, int(run.stdout.split()[-1])


# A worker whose training sleeps (everything else it does runs); argv: config, storage,
# seconds, and a folder where it says it is ready and waits for "go" (all imports done).
NO_TRAINING_WORKER = """
import os, random, sys, time
from dataclasses import replace
from pathlib import Path
import nas.search.execution.objective as objective
from nas.engine.train import Trained, TrainResult
from nas.search.config import load_config
from nas.search.execution.worker import run_worker

ready = Path(sys.argv[4])
(ready / str(os.getpid())).touch()
while not (ready / "go").exists():
    time.sleep(0.05)

def no_training(spec, data, train_cfg, **kwargs):
    time.sleep(float(sys.argv[3]))
    return Trained(spec, None, TrainResult(val_accuracy=random.random()))

objective.train = no_training
cfg = load_config(sys.argv[1])
run_worker(replace(cfg, storage=sys.argv[2]), progress=False)
"""


def copy_study(db: Path, url: str) -> None:
    """Replace whatever Optuna tables the database at ``url`` holds by those of ``db``."""
    from sqlalchemy import create_engine, text

    from nas.search._optuna.schema import tables

    source, target = create_engine(f"sqlite:///{db}"), create_engine(url)
    metadata = tables()
    metadata.drop_all(target)
    metadata.create_all(target)
    with source.connect() as src, target.begin() as dst:
        for table in metadata.sorted_tables:
            rows = [dict(r._mapping) for r in src.execute(table.select())]
            for at in range(0, len(rows), 20_000):
                dst.execute(table.insert(), rows[at:at + 20_000])
            keys = [c.name for c in table.primary_key.columns if c.autoincrement is True
                    or (c.autoincrement == "auto" and len(table.primary_key.columns) == 1)]
            if rows and keys and target.dialect.name == "postgresql":
                dst.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', "
                                 f"'{keys[0]}'), (SELECT max({keys[0]}) FROM {table.name}))"))


def schedule(work: Path, seed_db: Path, url: str, workers: int,
             trial_seconds: float) -> dict[str, float]:
    """Queue 10 x ``workers`` search trials on the study at ``url``, let ``workers`` workers
    whose training sleeps ``trial_seconds`` run them, and time it from the stored trials."""
    import optuna
    from optuna.trial import TrialState

    from nas.search._optuna.rdb import rdb_of
    from nas.search._optuna.reads import StudyReads, read_trials
    from nas.search.record import SlotKind, TrialRecord
    from nas.search.slots import enqueue_slots
    from nas.search.storage.backends import open_storage

    storage = open_storage(url)
    study = optuna.Study(study_name=NAME, storage=storage)
    # Counted, not study.get_trials: that reads every trial.
    first = sum(StudyReads(study).state_counts().values())
    queued = 10 * workers
    enqueue_slots(study, [TrialRecord(slot=SlotKind.SEARCH)] * queued)
    config = work / "seed.toml"
    ready = work / "ready"
    shutil.rmtree(ready, ignore_errors=True)
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", NO_TRAINING_WORKER, str(config), url,
                               str(trial_seconds), str(ready)],
                              cwd=ROOT, env={**os.environ, "SKIPNAS_OFFLINE": "1",
                                             "OMP_NUM_THREADS": "1"})
             for _ in range(workers)]
    while len(list(ready.iterdir())) < workers:  # every worker started: no import measured
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a worker exited before it was ready")
        time.sleep(0.1)
    clock = time.perf_counter()
    (ready / "go").touch()
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a worker exited with {p.returncode}")
    wall = time.perf_counter() - clock
    rows = [(t.datetime_start, t.datetime_complete, t.user_attrs["worker"])
            for t in read_trials(rdb_of(storage), storage.get_study_id_from_name(NAME),
                                 params=False, keys=("worker",), states=(TrialState.COMPLETE,),
                                 from_number=first)]
    if len(rows) != queued:
        raise SystemExit(f"{len(rows)} of {queued} queued trials completed")
    by_worker: dict[str, list[Any]] = {}
    for _, done, who in rows:
        by_worker.setdefault(who, []).append(done)
    warm = max(min(ends) for ends in by_worker.values())  # every worker has told one trial
    steady = [(start, done, who) for start, done, who in rows if start >= warm]
    if len(steady) < queued // 2:
        raise SystemExit(f"only {len(steady)} of {queued} trials started once every worker "
                         f"was warm: queue more per worker")
    busy = sorted((done - start).total_seconds() - trial_seconds for start, done, _ in steady)
    cycles = sorted((b - a).total_seconds() for ends in by_worker.values()
                    for a, b in zip(sorted(ends), sorted(ends)[1:]) if a >= warm)
    span = (max(r[1] for r in steady) - warm).total_seconds()
    return {"claim_to_tell_median_ms": 1000 * busy[len(busy) // 2],
            "claim_to_tell_p99_ms": 1000 * busy[min(len(busy) - 1, int(0.99 * len(busy)))],
            "cycle_median_ms": 1000 * cycles[len(cycles) // 2] if cycles else float("nan"),
            "trials_per_second": len(steady) / span, "steady_trials": len(steady),
            "wall_seconds": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/skipnas_scale"))
    ap.add_argument("--workers", type=int, nargs="*", default=[],
                    help="measure scheduling with these numbers of workers (not the commands)")
    ap.add_argument("--repeats", type=lambda s: max(1, int(s)), default=3,
                    help="runs of each read-only command (the median is shown)")
    ap.add_argument("--postgres", help="an empty PostgreSQL database to measure on as well")
    ap.add_argument("--trial-seconds", type=float, default=0.0,
                    help="scheduling: each trial's training sleeps this long (a GPU's time)")
    ap.add_argument("--storages", nargs="+", choices=["sqlite", "postgresql"],
                    default=["sqlite", "postgresql"], help="scheduling: which storages")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    seed = seed_study(args.work)
    if args.workers:
        return scheduling(args, seed)
    results: dict[int, dict[str, tuple[float, int]]] = {}
    rows: dict[int, int] = {}   # bench replay: the rows of the table replayed at that size
    for n in args.sizes:
        db = args.work / f"study_{n}.db"
        if not db.exists():
            t = time.perf_counter()
            clone(seed, db, n)
            print(f"built {db} ({n} trials) in {time.perf_counter() - t:.0f} s", flush=True)
        results[n] = measure(db, args.work, args.repeats)
        if n in BENCH_TABLES:
            table, rows[n] = bench_table(args.work, *BENCH_TABLES[n])
            results[n][REPLAY_LABEL] = timed(["bench", "replay", str(table), "--out",
                                              str(args.work / f"replay_{n}"), *REPLAY])
        print(f"{n} trials: " + ", ".join(f"{k} {s:.1f} s / {kb / 1024:.0f} MB"
                                         for k, (s, kb) in results[n].items()), flush=True)
    base = results[args.sizes[0]]
    print("\n| command | " + " | ".join(f"{n:,} trials" for n in args.sizes)
          + f" | ratio {args.sizes[-1]:,} / {args.sizes[0]:,} |")
    print("|---|" + "---|" * (len(args.sizes) + 1))
    for label in [*COMMANDS, REPLAY_LABEL]:
        if not all(label in results[n] for n in args.sizes):
            continue
        cells = [f"{results[n][label][0]:.1f} s, {results[n][label][1] / 1024:.0f} MB"
                 + (f" ({rows[n]:,} rows)" if label == REPLAY_LABEL else "")
                 for n in args.sizes]
        ratio = results[args.sizes[-1]][label][0] / base[label][0]
        print(f"| `{label}` | " + " | ".join(cells) + f" | {ratio:.1f}x |")


def scheduling(args: argparse.Namespace, seed: Path) -> None:
    rows = []
    for n in args.sizes:
        db = args.work / f"study_{n}.db"
        if not db.exists():
            clone(seed, db, n)
        for kind in [k for k in args.storages if k == "sqlite" or args.postgres]:
            # One copy per size: each run adds its 10 x W trials to it, a rounding error.
            if kind == "sqlite":
                shutil.copy(db, args.work / "sched.db")
                url = f"sqlite:///{args.work / 'sched.db'}"
            else:
                copy_study(db, args.postgres)
                url = args.postgres
            # The copy's dirty pages written out now: else the first run's commits wait for
            # them (SQLite's fsync of a fresh 600 MB copy: 3-10x slower first runs).
            os.sync()
            for w in args.workers:
                r = schedule(args.work, seed, url, w, args.trial_seconds)
                rows.append((kind, n, w, r))
                print(f"{kind} {n} trials {w} workers: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in r.items()), flush=True)
    print("\n| storage | trials | workers | claim to tell, median | p99 | cycle, median "
          "| trials/s |")
    print("|---|---|---|---|---|---|---|")
    for kind, n, w, r in rows:
        print(f"| {kind} | {n:,} | {w} | {r['claim_to_tell_median_ms']:.0f} ms | "
              f"{r['claim_to_tell_p99_ms']:.0f} ms | {r['cycle_median_ms']:.0f} ms | "
              f"{r['trials_per_second']:.1f} |")
    Path(args.work / f"scheduling_{'_'.join(args.storages)}.json").write_text(json.dumps(
        [{"storage": k, "trials": n, "workers": w, **r} for k, n, w, r in rows], indent=1))


if __name__ == "__main__":
    main()
