"""Tabular benchmarks of skip patterns: every pattern of a small space (or a seeded sample of a
large one) trained once per seed by the study engine, then exported as a table that search
strategies are replayed against without training (`replay`)."""
from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from search_spaces import Pattern, distance_stats

from ...errors import UserError
from ...stats import spearman, spearman_brown
from ..config import StudyConfig, load_config, study_style
from ..execution.worker import WorkerReport, run_workers
from ..record import TrialRecord, TrialRow
from ..slots import bench_slots
from ..strategy.samplers import make_sampler
from .study import create_study

TABLE = "table.csv"
PATTERNS = "patterns.csv"
CONFIG = "bench.toml"
COLUMNS = ("hash", "seed", "accuracy", "connections", "mbd", "mean_distance", "params", "flops",
           "train_seconds", "pattern")


def build_bench(config: str | Path, out: str | Path | None = None, *,
                cfg: StudyConfig | None = None, workers: int | None = None,
                progress: bool = True) -> tuple[Path, WorkerReport]:
    """Train every (pattern, seed) of the benchmark config that is not trained yet (resumable,
    any number of workers on the same storage), then write ``out``/table.csv and a copy of the
    config as ``out``/bench.toml and the per-pattern summary ``out``/patterns.csv (default
    ``out``: studies/results/NAME)."""
    cfg = cfg or load_config(config)
    if not cfg.bench.enabled:
        raise UserError(f"{config}: no [bench] seeds: not a benchmark config")
    if cfg.trials:
        raise UserError(f"{config}: trials: a benchmark trains its patterns only; set trials = 0")
    out = Path(out) if out else Path("studies/results") / cfg.name
    out.mkdir(parents=True, exist_ok=True)  # an unwritable place fails before training
    study = create_study(cfg)
    report = run_workers(cfg, cfg.workers if workers is None else workers, study=study,
                         progress=progress)
    rows = bench_rows(study)
    missing = len(bench_slots(cfg)) - len(rows)
    if missing:
        raise UserError(f"benchmark {cfg.name!r}: {missing} (pattern, seed) pairs did not "
                        f"complete (see `skipnas study status {cfg.name}`); run it again")
    write_table(rows, out / TABLE)
    if Path(config).resolve() != (out / CONFIG).resolve():
        shutil.copyfile(config, out / CONFIG)
    write_patterns(load_bench(out), out / PATTERNS)
    return out, report


@dataclass(frozen=True)
class BenchRow:
    """One line of a benchmark's table: a completed benchmark trial and the pattern it
    trained."""
    row: TrialRow
    pattern: dict[str, Any]       # Pattern.to_dict()

    def to_csv(self) -> dict[str, object]:
        """Its cells by column (:data:`COLUMNS`), the pattern as compact JSON."""
        cells = self.row.to_json()
        return {**{c: cells[c] for c in COLUMNS if c != "pattern"},
                "pattern": json.dumps(self.pattern, separators=(",", ":"))}


def bench_rows(study: optuna.Study) -> list[BenchRow]:
    """One row per completed benchmark trial (pattern, seed), in slot order."""
    rows, style = [], study_style(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = TrialRecord.from_trial(t)
        if r.pattern is None:
            continue
        rows.append(BenchRow(TrialRow.from_trial(t, style), r.pattern))
    return rows


def write_table(rows: list[BenchRow], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(row.to_csv() for row in rows)


def write_patterns(bench: "Bench", path: Path) -> None:
    """One line per pattern, best mean first: its seed count, mean and std of accuracy, its
    distance scores and the pattern."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["hash", "seeds", "mean", "std", "mean_distance", "mbd", "pattern"])
        for e in bench.ranked():
            d = distance_stats(e.pattern)
            writer.writerow([e.pattern.hash, len(e.accuracies), f"{e.accuracy:.6f}",
                             f"{e.std:.6f}", f"{d.mean:.6f}", d.mbd,
                             json.dumps(e.pattern.to_dict(), separators=(",", ":"))])


@dataclass(frozen=True)
class Entry:
    """One pattern of a benchmark: its accuracy per seed and its mean."""
    pattern: Pattern
    accuracies: tuple[float, ...]

    @property
    def accuracy(self) -> float:
        return sum(self.accuracies) / len(self.accuracies)

    @property
    def std(self) -> float:
        """The seeds' sample standard deviation (NaN with one seed)."""
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else math.nan


@dataclass(frozen=True)
class Reliability:
    """How repeatable a table's per-pattern means are: the Spearman between the means over
    its even-numbered and over its odd-numbered seeds (in seed order), Spearman-Brown corrected
    to twice a half (with an odd seed count the halves differ by one seed: approximate). No
    score can rank like the means much above Spearman ``ceiling``."""
    seeds: int
    split_half: float
    reliability: float

    @property
    def ceiling(self) -> float:
        """sqrt(reliability): NaN where the reliability is undefined, 0 where it is <= 0."""
        if not math.isfinite(self.reliability):
            return math.nan
        return math.sqrt(self.reliability) if self.reliability > 0 else 0.0

    def text(self) -> str:
        return (f"reliability of the means over {self.seeds} seeds: {self.reliability:.3f} "
                f"(split-half Spearman {self.split_half:.3f}, Spearman-Brown corrected); noise "
                f"ceiling for any score's Spearman with them: {self.ceiling:.3f}")


@dataclass(frozen=True)
class Bench:
    """A built benchmark: its config and its patterns by hash."""
    cfg: StudyConfig
    entries: dict[str, Entry]

    def ranked(self) -> list[Entry]:
        """Entries by mean accuracy, best first."""
        return sorted(self.entries.values(), key=lambda e: -e.accuracy)

    def reliability(self) -> Reliability:
        """The split-half reliability of the per-pattern means (:class:`Reliability`); needs
        two seeds."""
        seeds = len(self.cfg.bench.seeds)
        if seeds < 2:
            raise UserError(f"benchmark {self.cfg.name!r}: one seed per pattern; its "
                            f"reliability needs two")
        acc = np.array([e.accuracies for e in self.entries.values()])
        half = spearman(acc[:, 0::2].mean(axis=1), acc[:, 1::2].mean(axis=1))
        return Reliability(seeds, half, spearman_brown(half, 2))

    def top(self, fraction: float) -> set[str]:
        """Hashes of the best ``fraction`` of patterns (at least one)."""
        count = max(1, math.ceil(fraction * len(self.entries)))
        return {e.pattern.hash for e in self.ranked()[:count]}


def load_bench(directory: str | Path) -> Bench:
    """Read ``directory``/bench.toml and ``directory``/table.csv; a table that does not match
    its config (hash, seeds, columns) is one clear error."""
    directory = Path(directory)
    cfg = load_config(directory / CONFIG)
    path = directory / TABLE
    by_hash: dict[str, tuple[Pattern, dict[int, float]]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or set(COLUMNS) - set(reader.fieldnames):
                raise ValueError(f"columns must include {', '.join(COLUMNS)}")
            for line, row in enumerate(reader, start=2):
                pattern = Pattern.from_dict(json.loads(row["pattern"]))
                if pattern.hash != row["hash"]:
                    raise ValueError(f"line {line}: the pattern does not have hash {row['hash']}")
                accuracy = float(row["accuracy"])
                if not 0 <= accuracy <= 1:
                    raise ValueError(f"line {line}: accuracy {accuracy} outside 0..1")
                by_hash.setdefault(pattern.hash, (pattern, {}))[1][int(row["seed"])] = accuracy
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except (ValueError, KeyError, TypeError) as e:  # bad CSV, JSON, pattern or number
        raise UserError(f"{path}: not a benchmark table ({e})") from None
    seeds = set(cfg.bench.seeds)
    partial = [h for h, (_, accs) in by_hash.items() if set(accs) != seeds]
    if partial or not by_hash:
        raise UserError(f"{path}: {len(partial)} of {len(by_hash)} patterns lack seeds of "
                        f"{sorted(seeds)}" if partial else f"{path}: no rows")
    return Bench(cfg, {h: Entry(p, tuple(accs[s] for s in cfg.bench.seeds))
                       for h, (p, accs) in by_hash.items()})


@dataclass(frozen=True)
class Replay:
    """One replayed search: the best mean accuracy among the patterns tried after each trial,
    and the trial at which the top 5% and top 1% were first reached (None: not within the
    trials)."""
    curve: tuple[float, ...]
    top5: int | None
    top1: int | None
    distinct: int                          # patterns trained (a repeated proposal reuses one)


def strategy_config(cfg: StudyConfig, strategy: str) -> StudyConfig:
    """``cfg`` searching with ``strategy``: a sampler name, or ``screen:SCORE`` for the
    zero-cost screen maximising SCORE (one clear error for anything else)."""
    name, _, score = strategy.partition(":")
    if score and name != "screen":
        raise UserError(f"strategy {strategy!r}: only screen takes a score (screen:SCORE)")
    sampler = replace(cfg.sampler, name=name, score=score or cfg.sampler.score)
    return replace(cfg, sampler=sampler)


def replay(bench: Bench, sampler: str, trials: int, repeat: int) -> Replay:
    """Run ``sampler`` (a strategy of :func:`strategy_config`) against the table for
    ``trials`` trials, no training. A pattern's first proposal is told the accuracy of one of
    its seeds (drawn per repeat: a real trial trains one seed); proposing it again is told the
    same value, as a study reuses a trained twin, and still takes a trial. Seeded by
    ``repeat``."""
    cfg = strategy_config(bench.cfg, sampler)
    space = cfg.search_space.build()
    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler(space, cfg.sampler, repeat))
    rng = np.random.default_rng(repeat)
    tops = {"top5": bench.top(0.05), "top1": bench.top(0.01)}
    told: dict[str, float] = {}
    curve: list[float] = []
    hits: dict[str, int | None] = {"top5": None, "top1": None}
    for number in range(1, trials + 1):
        trial = study.ask()
        pattern = space.suggest(trial)
        entry = bench.entries.get(pattern.hash)
        if entry is None:
            raise UserError(f"benchmark {bench.cfg.name!r}: sampler {sampler!r} proposed "
                            f"pattern {pattern.hash}, which the table lacks")
        if pattern.hash not in told:
            told[pattern.hash] = entry.accuracies[int(rng.integers(len(entry.accuracies)))]
        curve.append(max(curve[-1] if curve else -math.inf, entry.accuracy))
        for name, top in tops.items():
            if hits[name] is None and pattern.hash in top:
                hits[name] = number
        study.tell(trial, told[pattern.hash])
    return Replay(tuple(curve), hits["top5"], hits["top1"], len(told))
