"""Queueing a study's search slots into a fresh journal file: Optuna's `enqueue_trial` a trial
at a time (one locked append each, the old path; N4) against `nas.search._optuna.queue.enqueue` (one
locked append a chunk). Both must leave the same trials; the target is 100,000 in at most
30 s on 2 cores.

    python benchmarks/journal_queue.py                   # 100,000 trials, old and new
    python benchmarks/journal_queue.py --trials 1000000 --skip-old
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import optuna

from nas.search._optuna.queue import enqueue
from nas.search.record import SlotKind, TrialRecord
from nas.search.storage.backends import open_storage


def one_at_a_time(study: optuna.Study, attrs: list[dict]) -> None:
    for a in attrs:
        study.enqueue_trial({}, user_attrs=a)


def timed(how: str, folder: Path, attrs: list[dict]) -> tuple[float, int, int]:
    """Seconds to queue ``attrs`` the way ``how`` says, the trials read back, the file's size."""
    path = folder / f"{how}.log"
    study = optuna.create_study(study_name="q", storage=open_storage(f"journal:///{path}"))
    start = time.perf_counter()
    (one_at_a_time if how == "old" else enqueue)(study, attrs)
    seconds = time.perf_counter() - start
    stored = optuna.load_study(study_name="q", storage=open_storage(f"journal:///{path}"))
    return seconds, len(stored.get_trials(deepcopy=False)), path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--skip-old", action="store_true", help="time the bulk path only")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    attrs = [TrialRecord(slot=SlotKind.SEARCH).to_user_attrs()] * args.trials
    print("| path | trials | seconds | trials/s | journal |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for how in ("new",) if args.skip_old else ("old", "new"):
            seconds, n, size = timed(how, Path(tmp), attrs)
            assert n == args.trials, f"{how}: {n} trials stored of {args.trials}"
            print(f"| {how} | {n:,} | {seconds:.1f} | {n / seconds:,.0f} | "
                  f"{size / 2**20:.0f} MB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
