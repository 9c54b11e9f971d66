"""Search: study configs and the trial record, storages, studies and their experiments (confirm,
fidelity, benchmarks), workers (skipnas' own, or a user's objective: `suggest_pattern`,
`record_trial`), and samplers. The names below are the public surface (what the CLI and users
import); each is imported on first use."""
from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers
    from ._optuna.api import experimental_ok, live_trial, study_id, trial_id
    from .config import StudyConfig, check_config, config_from_dict, load_config
    from .execution.native import record_trial, suggest_pattern
    from .execution.objective import Objective
    from .execution.worker import WorkerReport, auto_workers, run_worker, run_workers
    from .experiment.bench import (
        PATTERNS,
        Bench,
        build_bench,
        load_bench,
        strategy_config,
        write_patterns,
    )
    from .experiment.confirm import start_confirm
    from .experiment.evidence import answer, describe_best, describe_noise, describe_winner
    from .experiment.fidelity import (
        calibration_config,
        check_fidelity_config,
        fidelity_patterns,
        fidelity_slots,
        fidelity_table,
        start_fidelity,
    )
    from .experiment.study import (
        StudyStatus,
        best_trial,
        create_study,
        queued_trials,
        study_status,
    )
    from .record import TrialRecord, TrialRow
    from .slots import baseline_slots, bench_slots
    from .storage.backends import load_study, open_storage, read_study
    from .storage.failures import storage_failure
    from .storage.proxy import CA_ENV, TOKEN_ENV, server_keys
    from .storage.server import PROXY_THREADS, serve_proxy
    from .storage.urls import check_name, default_storage_url, mask_url
    from .strategy.samplers import PRUNERS, SAMPLERS, STRATEGIES

__getattr__, __all__ = lazy_exports(__name__, {
    "experimental_ok": "._optuna.api", "live_trial": "._optuna.api", "study_id": "._optuna.api",
    "trial_id": "._optuna.api",
    "StudyConfig": ".config", "load_config": ".config", "config_from_dict": ".config",
    "check_config": ".config",
    "record_trial": ".execution.native", "suggest_pattern": ".execution.native",
    "Objective": ".execution.objective",
    "WorkerReport": ".execution.worker", "auto_workers": ".execution.worker",
    "run_worker": ".execution.worker", "run_workers": ".execution.worker",
    "PATTERNS": ".experiment.bench", "Bench": ".experiment.bench",
    "build_bench": ".experiment.bench", "load_bench": ".experiment.bench",
    "strategy_config": ".experiment.bench", "write_patterns": ".experiment.bench",
    "start_confirm": ".experiment.confirm",
    "answer": ".experiment.evidence", "describe_best": ".experiment.evidence",
    "describe_noise": ".experiment.evidence",
    "describe_winner": ".experiment.evidence",
    "calibration_config": ".experiment.fidelity", "check_fidelity_config": ".experiment.fidelity",
    "fidelity_patterns": ".experiment.fidelity", "fidelity_slots": ".experiment.fidelity",
    "fidelity_table": ".experiment.fidelity", "start_fidelity": ".experiment.fidelity",
    "StudyStatus": ".experiment.study", "best_trial": ".experiment.study",
    "create_study": ".experiment.study", "queued_trials": ".experiment.study",
    "study_status": ".experiment.study",
    "TrialRecord": ".record", "TrialRow": ".record",
    "baseline_slots": ".slots", "bench_slots": ".slots",
    "load_study": ".storage.backends", "open_storage": ".storage.backends",
    "read_study": ".storage.backends",
    "storage_failure": ".storage.failures",
    "CA_ENV": ".storage.proxy", "TOKEN_ENV": ".storage.proxy", "server_keys": ".storage.proxy",
    "PROXY_THREADS": ".storage.server", "serve_proxy": ".storage.server",
    "check_name": ".storage.urls", "default_storage_url": ".storage.urls",
    "mask_url": ".storage.urls",
    "PRUNERS": ".strategy.samplers", "SAMPLERS": ".strategy.samplers",
    "STRATEGIES": ".strategy.samplers",
})
