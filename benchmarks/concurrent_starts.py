"""Four `study start` of one config at once, repeated on fresh storages: each repetition must
hold exactly TRIALS slots (F1: up to twice as many were queued; F14: two starts raced on a
fresh SQLite file's schema; a failed trial's slot, queued again, is counted once). With --run,
the four starts are real `skipnas study start` processes that also work the study (tiny
trials), and exactly TRIALS must be COMPLETE.

    python benchmarks/concurrent_starts.py                          # 20 x 300, enqueue only
    python benchmarks/concurrent_starts.py --reps 2 --run           # and run them to the end
    python benchmarks/concurrent_starts.py --postgres postgresql+psycopg://USER@HOST/DB
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

START_ONLY = ("import sys; from nas.search.config import load_config; "
              "from nas.search.experiment.study import create_study; "
              "create_study(load_config(sys.argv[1]))")
ENV = {**os.environ, "SKIPNAS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _config(path: Path, name: str, url: str, trials: int) -> Path:
    path.write_text(f'''name = "{name}"
trials = {trials}
storage = "{url}"
heartbeat_seconds = 2
[search_space]
name = "free"
layers = [3]
[data]
name = "synthetic"
train_size = 64
val_size = 32
[architecture]
growth = 2
bottleneck = false
[training]
epochs = 1
batch_size = 64
[sampler]
name = "random"
''')
    return path


def repetition(kind: str, rep: int, trials: int, run: bool, work: Path,
               postgres: str | None) -> Counter:
    """The trial states of one study after four concurrent starts."""
    from nas.search.config import load_config
    from nas.search.storage.backends import load_study

    name = f"starts-{kind}-{rep}-{os.getpid()}-{time.monotonic_ns()}"
    url = {"sqlite": f"sqlite:///{work}/{name}.db", "journal": f"journal:///{work}/{name}.log",
           "postgres": postgres}[kind]
    config = _config(work / f"{name}.toml", name, url, trials)
    argv = ([sys.executable, "-m", "nas.cli", "study", "start", str(config), "-q"] if run else
            [sys.executable, "-c", START_ONLY, str(config)])
    procs = [subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"{kind} repetition {rep}: a start failed (rc {p.returncode}):\n"
                             f"{err}")
    study = load_study(load_config(config).name, url)
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--run", action="store_true", help="start real workers; check COMPLETE")
    parser.add_argument("--postgres", default=os.environ.get("SKIPNAS_TEST_POSTGRES"),
                        help="a PostgreSQL URL (default: $SKIPNAS_TEST_POSTGRES; else skipped)")
    args = parser.parse_args()
    kinds = ["sqlite", "journal"] + (["postgres"] if args.postgres else [])
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            start, counts = time.perf_counter(), []
            for rep in range(args.reps):
                states = repetition(kind, rep, args.trials, args.run, Path(tmp), args.postgres)
                counts.append(states)
                ok = (states["COMPLETE"] == args.trials and not states["RUNNING"]
                      and not states["WAITING"]) if args.run else \
                    sum(states.values()) == args.trials
                bad += not ok
                if not ok:
                    print(f"  {kind} repetition {rep}: {dict(states)} FAULT")
            totals = sorted({sum(c.values()) - c["FAIL"] for c in counts})
            done = sorted({c["COMPLETE"] for c in counts})
            print(f"{kind:8} {args.reps} x 4 starts of {args.trials} trials: slots {totals}"
                  + (f", COMPLETE {done}" if args.run else "")
                  + f" ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"{bad} of {args.reps * len(kinds)} repetitions faulty")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
