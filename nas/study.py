"""Optuna studies over budgeted pattern spaces: create/resume, workers, status.

A study holds exactly the trials its config asks for: `create_study` enqueues one WAITING trial
per missing slot (search trials and baseline template runs), and workers only ever claim WAITING
trials. A killed worker's trial goes stale (no heartbeat), is marked FAIL, and Optuna's retry
callback enqueues it again for the surviving workers, so the study still ends with exactly the
configured number of finished trials.
"""
from __future__ import annotations

import math
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from search_spaces import Pattern, PatternError, budgeted_block, get_template, template_pattern

from .config import StudyConfig
from .errors import UserError
from .model import build
from .settings import to_dict
from .spec import PatternSpec, make_spec
from .train import resolve_device, seed_everything, train

# Heartbeats and their retry callback are marked experimental; they are the design here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# --- storage --------------------------------------------------------------------------------

def open_storage(url: str, heartbeat_seconds: int | None = None) -> optuna.storages.BaseStorage:
    """Optuna storage for ``url``: ``sqlite:///file.db`` (one worker, or a few on one machine),
    ``journal:///file.log`` (many local processes, file-locked, no heartbeat),
    ``postgresql+psycopg://...`` (many machines). Fails with one clear line."""
    scheme = url.split(":", 1)[0]
    if scheme == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        path = url.removeprefix("journal:///")  # as SQLAlchemy: a 4th slash makes it absolute
        if not url.startswith("journal:///") or not path:
            raise UserError(f"bad storage URL {url!r}: use journal:///path/to/file.log")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")
            or scheme.startswith("mysql")):
        raise UserError(f"bad storage URL {url!r}: expected sqlite:///FILE.db, journal:///FILE.log "
                        f"or postgresql+psycopg://USER:PASS@HOST/DB")
    kwargs: dict[str, Any] = {}
    if scheme.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Concurrent local workers wait for the file lock instead of "database is locked".
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    if heartbeat_seconds is not None:
        kwargs.update(heartbeat_interval=heartbeat_seconds, grace_period=3 * heartbeat_seconds,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    try:
        return RDBStorage(url, **kwargs)
    except Exception as e:  # SQLAlchemy/driver errors vary by backend
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot open storage {url!r}: {reason}") from None


def load_study(name: str, storage_url: str, heartbeat_seconds: int | None = None,
               **study_kwargs: Any) -> optuna.Study:
    """An existing study; a clear error (and no new empty database) when it is not there."""
    if storage_url.startswith("sqlite:///"):
        path = Path(storage_url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserError(f"no study {name!r}: storage file {path} does not exist")
    storage = open_storage(storage_url, heartbeat_seconds)
    try:
        return optuna.load_study(study_name=name, storage=storage, **study_kwargs)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserError(f"no study {name!r} in {storage_url}"
                        + (f" (it holds: {', '.join(names)})" if names else " (it is empty)")
                        + "; create it with `skipnas study start CONFIG`") from None


# --- study creation -------------------------------------------------------------------------

def make_sampler(cfg: StudyConfig, seed: int) -> optuna.samplers.BaseSampler:
    name = cfg.sampler.name
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner.name == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=cfg.pruner.warmup_epochs)
    if cfg.pruner.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1,
                                              max_resource=cfg.training.epochs or "auto")
    return optuna.pruners.NopPruner()


def baseline_slots(cfg: StudyConfig) -> list[dict[str, Any]]:
    return [{"baseline": t, "seed": s} for t in cfg.baselines.templates for s in cfg.baselines.seeds]


def _counts_as_slot(t: optuna.trial.FrozenTrial) -> bool:
    """Trials that fill a slot: all but failures that were retried or interrupted."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING):
        return True
    return t.state == TrialState.FAIL and "fail_reason" in t.user_attrs


def create_study(cfg: StudyConfig, seed: int | None = None,
                 storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study (or load it) and enqueue the trials still missing from the config."""
    storage = storage or open_storage(cfg.storage_url, cfg.heartbeat_seconds)
    directions = ["maximize", "minimize"] if cfg.multi_objective else ["maximize"]
    study = optuna.create_study(study_name=cfg.name, storage=storage, load_if_exists=True,
                                directions=directions, sampler=make_sampler(cfg, cfg.seed if
                                                                             seed is None else seed),
                                pruner=make_pruner(cfg))
    if [d.name.lower() for d in study.directions] != directions:
        raise UserError(f"study {cfg.name!r} in {cfg.storage_url} has directions "
                        f"{[d.name.lower() for d in study.directions]}, the config asks {directions}")
    space = cfg.search_space.build()
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", _config_summary(cfg, space))
    elif stored["search_space"] != _config_summary(cfg, space)["search_space"]:
        raise UserError(f"study {cfg.name!r} in {cfg.storage_url} was made with search space "
                        f"{stored['search_space']}; this config asks "
                        f"{_config_summary(cfg, space)['search_space']}. Use another name.")
    trials = study.get_trials(deepcopy=False)
    slots = [t for t in trials if _counts_as_slot(t)]
    have_baselines = [{"baseline": t.user_attrs["baseline"], "seed": t.user_attrs["seed"]}
                      for t in slots if "baseline" in t.user_attrs]
    for attrs in baseline_slots(cfg):
        if attrs in have_baselines:
            have_baselines.remove(attrs)
        else:
            study.enqueue_trial({}, user_attrs=attrs)
    search = sum(1 for t in slots if "baseline" not in t.user_attrs)
    for _ in range(max(0, cfg.trials - search)):
        study.enqueue_trial({}, user_attrs={"slot": "search"})
    return study


def _config_summary(cfg: StudyConfig, space) -> dict[str, Any]:
    return {"search_space": space.describe(), "architecture": to_dict(cfg.architecture),
            "data": to_dict(cfg.data), "training": to_dict(cfg.training),
            "sampler": to_dict(cfg.sampler), "pruner": to_dict(cfg.pruner)}


# --- the objective --------------------------------------------------------------------------

class Objective:
    """Trains the pattern a trial proposes (or its baseline template) and stores its metrics.
    Data is loaded once per worker."""

    def __init__(self, cfg: StudyConfig, progress: bool = False):
        self.cfg = cfg
        self.space = cfg.search_space.build()
        self.device = resolve_device(cfg.training.device)
        self.data = cfg.data.load(self.device)
        self.progress = progress

    def pattern_for(self, trial: optuna.Trial) -> tuple[Pattern, int]:
        attrs = trial.user_attrs
        if "baseline" not in attrs:
            return self.space.suggest(trial), self.cfg.training.seed
        name = attrs["baseline"]
        try:  # at the study budget where the template can meet it ...
            blocks = [budgeted_block(name, L, b)
                      for L, b in zip(self.space.layers, self.space.block_budgets)]
            return Pattern(blocks), int(attrs["seed"])
        except PatternError:  # ... else at its own count (dense and chain as references)
            get_template(name)
            return template_pattern(name, self.space.layers), int(attrs["seed"])

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        pattern, seed = self.pattern_for(trial)
        cfg = self.cfg
        done = _completed_twin(trial.study, pattern.hash, seed)
        seed_everything(seed, self.device)
        model = build(pattern, cfg.architecture)
        spec = make_spec(pattern, cfg.architecture, model=model,
                         origin={"study": cfg.name, "trial": trial.number, "seed": seed,
                                 **({"template": trial.user_attrs["baseline"]}
                                    if "baseline" in trial.user_attrs else {})})
        for key, value in {"spec": spec.to_dict(), "hash": pattern.hash, "seed": seed,
                           "device": str(self.device), **spec.metrics}.items():
            trial.set_user_attr(key, value)
        if done is not None:  # same pattern and seed already trained: reuse, never retrain
            trial.set_user_attr("reused_from", done.number)
            trial.set_user_attr("train_seconds", 0.0)
            if "val_curve" in done.user_attrs:
                trial.set_user_attr("val_curve", done.user_attrs["val_curve"])
            return done.values[0] if not cfg.multi_objective else tuple(done.values)

        def report(epoch: int, accuracy: float) -> None:
            if cfg.multi_objective:
                return
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} at accuracy {accuracy:.4f}")

        result = train(model, self.data, replace(cfg.training, seed=seed), on_epoch=report,
                       progress=self.progress)
        for key, value in {"train_seconds": result.train_seconds, "val_curve": result.val_curve,
                           "loss_curve": result.loss_curve,
                           "images_per_second": result.images_per_second,
                           "status": result.status}.items():
            trial.set_user_attr(key, value)
        if result.status != "ok":
            trial.set_user_attr("fail_reason", result.message)
            raise _Diverged(result.message)
        if cfg.multi_objective:
            return result.val_accuracy, float(spec.metrics[cfg.sampler.second_objective])
        return result.val_accuracy


class _Diverged(Exception):
    pass


def _completed_twin(study: optuna.Study, pattern_hash: str, seed: int):
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("hash") == pattern_hash and t.user_attrs.get("seed") == seed \
                and "reused_from" not in t.user_attrs:
            return t
    return None


# --- workers --------------------------------------------------------------------------------

def _claim_waiting(study: optuna.Study) -> int | None:
    """Atomically move one WAITING trial to RUNNING; None when the queue is empty."""
    storage = study._storage  # Optuna exposes no public "pop only if queued" call
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return t._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


class _Heartbeat:
    """Records the trial's heartbeat every interval while the trial runs."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.interval = storage.get_heartbeat_interval() if hasattr(
            storage, "get_heartbeat_interval") else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self):
        if self.interval:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.interval:
            self.thread.join()


@dataclass
class WorkerReport:
    trials: int = 0
    seconds: float = 0.0
    train_seconds: float = 0.0


def run_worker(cfg: StudyConfig, *, seed: int | None = None, progress: bool = True,
               study: optuna.Study | None = None, poll_seconds: float = 1.0) -> WorkerReport:
    """Claim and run WAITING trials until none is waiting and none is running elsewhere
    (a running one may still fail and be retried here)."""
    if study is None:
        study = load_study(cfg.name, cfg.storage_url, cfg.heartbeat_seconds,
                           sampler=make_sampler(cfg, cfg.seed if seed is None else seed),
                           pruner=make_pruner(cfg))
    objective = Objective(cfg)
    report = WorkerReport()
    bar = _StudyBar(study, disable=not progress)
    while True:
        optuna.storages.fail_stale_trials(study)  # dead workers' trials: FAIL, then re-queued
        trial_id = _claim_waiting(study)
        if trial_id is None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not running:
                break
            time.sleep(poll_seconds)
            continue
        start = time.perf_counter()
        _run_one(study, trial_id, objective)
        report.trials += 1
        report.seconds += time.perf_counter() - start
        frozen = study._storage.get_trial(trial_id)
        report.train_seconds += frozen.user_attrs.get("train_seconds", 0.0)
        bar.update(frozen)
    bar.close()
    return report


def _run_one(study: optuna.Study, trial_id: int, objective: Objective) -> None:
    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    with _Heartbeat(study._storage, trial_id):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return
        except (_Diverged, RuntimeError, FloatingPointError, PatternError) as e:
            # One bad trial (diverged, out of memory, ...) never stops the study.
            if "fail_reason" not in trial.user_attrs:
                trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}")
            study.tell(trial, state=TrialState.FAIL)
            return
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)  # interrupted: re-enqueued on resume
            raise
    study.tell(trial, values)


class _StudyBar:
    def __init__(self, study: optuna.Study, disable: bool):
        from tqdm.auto import tqdm
        trials = study.get_trials(deepcopy=False)
        total = sum(1 for t in trials if _counts_as_slot(t))
        done = sum(1 for t in trials if t.state in FINISHED and _counts_as_slot(t))
        self.bar = tqdm(total=total, initial=done, disable=disable, unit="trial",
                        dynamic_ncols=True, desc=study.study_name)
        self.best = -math.inf

    def update(self, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and trial.values:
            self.best = max(self.best, trial.values[0])
        self.bar.set_postfix(best=f"{self.best:.4f}" if self.best > -math.inf else "-",
                             last=trial.state.name)
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


# --- status ---------------------------------------------------------------------------------

def study_status(name: str, storage_url: str) -> dict[str, Any]:
    """Counts by state, the best trial, and an ETA for the queued trials."""
    study = load_study(name, storage_url)
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: sum(1 for t in trials if t.state == s) for s in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in complete
                 if t.datetime_start and t.datetime_complete]
    per_trial = sum(durations) / len(durations) if durations else None
    workers = max(1, counts["RUNNING"])
    eta = (per_trial * (counts["WAITING"] + counts["RUNNING"]) / workers
           if per_trial is not None else None)
    best = None
    if complete:
        top = max(complete, key=lambda t: t.values[0])
        best = {"number": top.number, "accuracy": top.values[0], "hash": top.user_attrs.get("hash"),
                "connections": top.user_attrs.get("connections"), "mbd": top.user_attrs.get("mbd")}
    return {"study": name, "storage": storage_url, "counts": counts, "best": best,
            "seconds_per_trial": per_trial, "eta_seconds": eta,
            "reused": sum(1 for t in complete if "reused_from" in t.user_attrs)}


def trial_spec(name: str, storage_url: str, number: int | None = None) -> PatternSpec:
    """The pattern spec of trial ``number``, or of the best completed trial."""
    study = load_study(name, storage_url)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if "spec" in t.user_attrs]
    if number is None:
        if not complete:
            raise UserError(f"study {name!r} has no completed trial to export")
        trial = max(complete, key=lambda t: t.values[0])
    else:
        trial = next((t for t in complete if t.number == number), None)
        if trial is None:
            states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
            raise UserError(f"trial {number} of {name!r} is "
                            f"{states.get(number, 'not in the study')}, not a completed trial")
    spec = PatternSpec.from_dict(trial.user_attrs["spec"], f"trial {trial.number}")
    return replace(spec, origin={**spec.origin, "study": name, "trial": trial.number,
                                 "accuracy": trial.values[0]})


def worker_seed(cfg: StudyConfig) -> int:
    """Extra workers draw different proposals from the first one."""
    return cfg.seed + os.getpid()
