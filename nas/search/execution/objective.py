"""The objective a worker runs for each trial it claims: train the pattern its slot proposes
(the sampler's, the slot's own, a search pattern repeated, or a baseline template), or reuse a
twin's result, and store its record."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces import Pattern, PatternError

from ... import interrupts
from ...engine.loader import DataBundle
from ...engine.run_config import DataConfig
from ...engine.spec import PatternSpec, make_spec
from ...engine.train import TrainResult, resolve_device, train
from .._optuna.api import params_in_one_transaction, trial_id
from ..config import Fidelity, StudyConfig
from ..record import SlotKind, TrialRecord, record, record_with_role
from ..slots import baseline_pattern, counts_as_slot
from .twins import TwinIndex, completed_twin

Values = float | tuple[float, float]


class Objective:
    """Trains the pattern a trial proposes (or its baseline template) and stores its record.
    Data is loaded once per worker."""

    def __init__(self, cfg: StudyConfig, progress: bool = False):
        self.cfg = cfg
        self.space = cfg.search_space.build()
        self.device = resolve_device(cfg.training.device)
        self._data = {(cfg.data, False): cfg.data.load(self.device)}
        self.progress = progress
        self.twins = TwinIndex()
        self.threads = cfg.training.threads  # CPU threads of the next trial (CoreShare)

    def data(self, data_cfg: DataConfig, with_test: bool = False) -> DataBundle:
        """The data of a fidelity (``with_test``: with the test split), loaded once per
        worker."""
        if (data_cfg, with_test) not in self._data:
            self._data[data_cfg, with_test] = data_cfg.load(self.device, with_test=with_test)
        return self._data[data_cfg, with_test]

    def __call__(self, trial: optuna.Trial) -> Values:
        slot = TrialRecord.from_trial(trial)
        pattern, seed = self.pattern_for(trial, slot)
        search = self.cfg.search_fidelity
        fidelity = Fidelity.from_dict(slot.fidelity) if slot.fidelity else search
        spec = self.describe(trial, pattern, seed)
        twin = completed_twin(trial.study, pattern.hash, seed, fidelity, search,
                              before=trial.number, grace=3 * self.cfg.heartbeat_seconds,
                              index=self.twins, asking=trial_id(trial))
        if twin is not None:  # same pattern, seed and fidelity already trained: reuse it
            done = TrialRecord.from_trial(twin)
            record(trial, reused_from=twin.number, train_seconds=0.0, val_curve=done.val_curve,
                   test_accuracy=done.test_accuracy)
            return twin.values[0] if not self.cfg.multi_objective else tuple(twin.values)
        # Noise, confirm and fidelity runs measure a pattern: never pruned (cut short).
        prune = slot.kind not in (SlotKind.NOISE, SlotKind.CONFIRM, SlotKind.FIDELITY)
        result = self.train(trial, spec, seed, fidelity, prune)
        return self.values(spec, result)

    def pattern_for(self, trial: optuna.Trial, slot: TrialRecord) -> tuple[Pattern, int]:
        """The pattern and seed of a slot: the search space's proposal at the configured seed,
        the slot's own pattern, a search pattern to repeat (noise), or a baseline template."""
        if slot.kind == SlotKind.NOISE and slot.pattern is None:
            pattern, number = _pattern_to_repeat(trial.study)
            record(trial, pattern=pattern.to_dict(), repeat_of=number)
            assert slot.seed is not None
            return pattern, slot.seed
        if slot.pattern is not None:
            assert slot.seed is not None
            return Pattern.from_dict(slot.pattern), slot.seed
        if slot.baseline is None:
            with params_in_one_transaction(trial):
                pattern = self.space.suggest(_Interruptible(trial))
            return pattern, self.cfg.training.seed
        assert slot.seed is not None
        return baseline_pattern(self.space, slot.baseline, slot.style_in(self.space.style),
                                slot.budget, slot.output), slot.seed

    def describe(self, trial: optuna.Trial, pattern: Pattern, seed: int) -> PatternSpec:
        """Measure the pattern's network and record its spec and metrics before training, with
        the trial's role (:data:`ROLE_ATTR`, for the dashboard)."""
        slot = TrialRecord.from_trial(trial)
        template = {"template": slot.baseline, "budget": slot.budget,
                    "block_output": slot.output} if slot.baseline else {}
        spec = make_spec(pattern, self.cfg.architecture,
                         origin={"study": self.cfg.name, "trial": trial.number, "seed": seed,
                                 "dataset": self.cfg.data.name, **template})
        cpu = {"threads": self.threads} if self.device.type == "cpu" and self.threads else {}
        record_with_role(trial, slot.role, spec=spec.to_dict(), hash=pattern.hash, seed=seed,
                         device=str(self.device), style=pattern.style, **cpu, **spec.metrics)
        return spec

    def train(self, trial: optuna.Trial, spec: PatternSpec, seed: int, fidelity: Fidelity,
              prune: bool = True) -> TrainResult:
        """Train at ``fidelity``, reporting each epoch to the pruner (``prune``); record the
        outcome (with the test accuracy where the fidelity is scored on the test split)."""
        cfg = self.cfg

        def report(epoch: int, accuracy: float) -> None:
            if cfg.multi_objective or not prune:
                return
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} at accuracy {accuracy:.4f}")

        data_cfg, train_cfg = cfg.at_fidelity(fidelity)
        result = train(spec, self.data(data_cfg, fidelity.eval_test),
                       replace(train_cfg, seed=seed, threads=self.threads), on_epoch=report,
                       on_batch=interrupts.check, eval_test=fidelity.eval_test,
                       progress=self.progress).result
        record(trial, train_seconds=result.train_seconds, val_curve=result.val_curve,
               test_accuracy=result.test_accuracy, loss_curve=result.loss_curve,
               images_per_second=result.images_per_second, status=result.status)
        if result.status != "ok":
            record(trial, fail_reason=result.message)
            raise _Diverged(result.message)
        return result

    def values(self, spec: PatternSpec, result: TrainResult) -> Values:
        if self.cfg.multi_objective:
            return result.val_accuracy, float(spec.metrics[self.cfg.sampler.second_objective])
        return result.val_accuracy


class _Interruptible:
    """A trial whose every suggestion is a safe point for Ctrl-C and SIGTERM (a space with
    thousands of keys samples for minutes)."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def suggest_float(self, name: str, low: float, high: float) -> float:
        interrupts.check()
        return self.trial.suggest_float(name, low, high)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        interrupts.check()
        return self.trial.suggest_categorical(name, choices)


class _Diverged(Exception):
    pass


class _NothingToRepeat(Exception):
    pass


def _pattern_to_repeat(study: optuna.Study) -> tuple[Pattern, int]:
    """The earliest completed search pattern that no noise slot repeats yet, and its trial
    number (earliest: the choice does not depend on accuracy, so the measured spread is not
    biased by the selection)."""
    trials = study.get_trials(deepcopy=False)
    records = [(t, TrialRecord.from_trial(t)) for t in trials]
    taken = {r.hash for t, r in records if r.kind == SlotKind.NOISE and counts_as_slot(t)}
    for t, r in records:
        if t.state == TrialState.COMPLETE and r.kind == SlotKind.SEARCH and r.spec and \
                not r.is_reused and r.hash not in taken:
            return PatternSpec.from_dict(r.spec).pattern, t.number
    raise _NothingToRepeat("no completed search pattern left to train again for the noise "
                           "measurement")


# What fails one trial, never the study: a run that diverged, no pattern left to repeat, and
# errors of the run itself (out of memory, a pattern the network cannot take, ...).
TRIAL_FAILURES = (_Diverged, _NothingToRepeat, RuntimeError, FloatingPointError, PatternError)
