"""Two worker processes on one machine: `skipnas study start` plus one `skipnas worker` of the
same study must finish it in at most 0.8x the wall time of `study start` alone (issue 40: each
process trained on every core, and the pair sat at 0/12 for 16 minutes on 2 cores).

Runs on real data (the quickstart's Fashion-MNIST network and sizes, `workers = 1` per process)
without OMP_NUM_THREADS, so each process picks its threads itself (nas/search/execution/cores.py).
`--repeats` alternates the two arms. Quote its output; run it on an idle machine.

    python benchmarks/shared_cores.py                  # 12 trials, 2 repeats
    python benchmarks/shared_cores.py --trials 8 --repeats 1
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.8
ENV = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"SKIPNAS_OFFLINE": "1"}


def _config(folder: Path, name: str, trials: int) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'''name = "{name}"
trials = {trials}
workers = 1
storage = "sqlite:///{folder}/{name}.db"
[search_space]
name = "offsets"
layers = [24]
[data]
name = "fashion-mnist"
train_size = 4096
val_size = 2000
[architecture]
growth = 8
bottleneck = false
stem_stride = 4
[training]
epochs = 2
batch_size = 128
[sampler]
name = "random"
''')
    return path


def _skipnas(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *argv, "-q"], env=ENV,
                            stdout=subprocess.DEVNULL)


def _run(folder: Path, name: str, trials: int, workers: int) -> float:
    config = str(_config(folder, name, trials))
    subprocess.run([sys.executable, "-m", "nas.cli", "study", "start", config, "--queue-only",
                    "-q"], env=ENV, check=True, stdout=subprocess.DEVNULL)
    start = time.perf_counter()
    procs = [_skipnas("study", "start", config)] + \
        [_skipnas("worker", config) for _ in range(workers - 1)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a process of {name} exited with {p.returncode}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    alone, pair = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            alone.append(_run(Path(tmp), f"alone{r}", args.trials, 1))
            pair.append(_run(Path(tmp), f"pair{r}", args.trials, 2))
            print(f"repeat {r}: start alone {alone[-1]:.1f} s, start + worker {pair[-1]:.1f} s",
                  flush=True)
    ratio = statistics.median(pair) / statistics.median(alone)
    print(f"{os.cpu_count()} cores, {args.trials} trials: median alone "
          f"{statistics.median(alone):.1f} s, start + worker {statistics.median(pair):.1f} s; "
          f"ratio {ratio:.2f} (target <= {TARGET}): {'met' if ratio <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
