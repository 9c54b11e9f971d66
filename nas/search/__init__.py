"""Search: study configs, storages, studies, workers, samplers and the trial record."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "StudyConfig": ".config", "load_config": ".config", "config_from_dict": ".config",
    "TrialRecord": ".record", "TrialRow": ".record",
    "SAMPLERS": ".samplers", "PRUNERS": ".samplers",
    "open_storage": ".storage", "load_study": ".storage", "default_storage_url": ".storage",
    "create_study": ".study", "best_trial": ".study", "study_status": ".study",
    "StudyStatus": ".study",
    "run_worker": ".worker", "Objective": ".worker",
    "suggest_pattern": ".native", "record_trial": ".native",
})
