"""How long SQLite workers hold the study's write lock: the share of each worker's wall time
spent inside a transaction (from `BEGIN IMMEDIATE` taken to its commit or rollback done), the
number of transactions per trial, and the longest hold.
A worker stopped at a random moment holds the lock with about that share as probability, and
then freezes the others until it goes on (F3).

    python benchmarks/sqlite_lock_share.py                 # tiny trials, then longer ones
    python benchmarks/sqlite_lock_share.py --shapes tiny --workers 3 --trials 12
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

from nas.search.config import load_config

# tiny: the red team's shape (a trial is ~1 s, a heartbeat every second); brief: a trial of
# some 15 s with the default heartbeat, nearer to a real study's.
SHAPES = {
    "tiny": dict(train_size=512, val_size=256, epochs=1, growth=4, heartbeat=1),
    "brief": dict(train_size=2048, val_size=1024, epochs=4, growth=12, heartbeat=30),
}


def _config(path: Path, shape: dict, trials: int) -> Path:
    path.write_text(f'''name = "lock-share"
trials = {trials}
storage = "sqlite:///{path.parent}/s.db"
heartbeat_seconds = {shape["heartbeat"]}
[search_space]
name = "free"
layers = [6]
[data]
name = "synthetic"
train_size = {shape["train_size"]}
val_size = {shape["val_size"]}
[architecture]
growth = {shape["growth"]}
bottleneck = false
[training]
epochs = {shape["epochs"]}
batch_size = 64
[sampler]
name = "random"
''')
    return path


def _worker(config: str, out: multiprocessing.Queue) -> None:
    """Run a worker whose every SQLite transaction is timed."""
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    from nas.search.execution.worker import run_worker
    from nas.search.storage.sqlite import SQLiteStorage

    held, longest, count, since = [0.0], [0.0], [0], {}
    begin = SQLiteStorage._begin_immediate

    def timed_begin(self, connection):  # type: ignore[no-untyped-def]
        begin(self, connection)
        since[id(connection)] = time.perf_counter()
        count[0] += 1

    def timed_end(end):  # type: ignore[no-untyped-def]
        def wrapped(self, dbapi_connection):  # type: ignore[no-untyped-def]
            end(self, dbapi_connection)
            driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
            start = since.pop(id(driver), None)
            if start is not None:
                hold = time.perf_counter() - start
                held[0] += hold
                longest[0] = max(longest[0], hold)
        return wrapped

    SQLiteStorage._begin_immediate = timed_begin  # type: ignore[method-assign]
    for name in ("do_commit", "do_rollback"):
        setattr(SQLiteDialect_pysqlite, name, timed_end(getattr(SQLiteDialect_pysqlite, name)))
    cfg = load_config(config)
    start = time.perf_counter()
    report = run_worker(cfg, progress=False)
    wall = time.perf_counter() - start
    out.put(dict(wall=wall, held=held[0], longest=longest[0], transactions=count[0],
                 trials=report.trials))


def measure(shape: dict, workers: int, trials: int) -> list[dict]:
    from nas.search.experiment.study import create_study

    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp) / "c.toml", shape, trials)
        create_study(load_config(config))
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(str(config), out)) for _ in range(workers)]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{args.workers} SQLite workers, {args.trials} trials per study, "
          f"{os.cpu_count()} cores")
    print(f"{'shape':6} {'worker':>6} {'trials':>6} {'wall s':>7} {'txns/trial':>10} "
          f"{'held s':>7} {'held %':>7} {'longest ms':>10}")
    for name in args.shapes:
        for i, r in enumerate(measure(SHAPES[name], args.workers, args.trials)):
            print(f"{name:6} {i:>6} {r['trials']:>6} {r['wall']:>7.1f} "
                  f"{r['transactions'] / max(r['trials'], 1):>10.1f} {r['held']:>7.2f} "
                  f"{100 * r['held'] / r['wall']:>6.1f}% {1000 * r['longest']:>10.1f}")


if __name__ == "__main__":
    sys.exit(main())
