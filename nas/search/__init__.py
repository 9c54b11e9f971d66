"""Search: study configs, storages, studies, workers, samplers and the trial record."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "StudyConfig": ".config", "load_config": ".config", "config_from_dict": ".config",
    "TrialRecord": ".record", "TrialRow": ".record",
    "SAMPLERS": ".strategy.samplers", "PRUNERS": ".strategy.samplers",
    "open_storage": ".storage.backends", "load_study": ".storage.backends",
    "default_storage_url": ".storage.urls",
    "create_study": ".experiment.study", "best_trial": ".experiment.study",
    "study_status": ".experiment.study", "StudyStatus": ".experiment.study",
    "run_worker": ".execution.worker", "Objective": ".execution.objective",
    "load_bench": ".experiment.bench",
})
