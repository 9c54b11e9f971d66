"""The engine: datasets, stems, the pattern network builder, the pattern spec, the trainer and
what a training run hands over."""
from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ArchConfig": ".run_config", "DataConfig": ".run_config", "TrainConfig": ".run_config",
    "DATASETS": ".datasets",
    "DataBundle": ".loader", "load_data": ".loader",
    "PatternNet": ".model", "build_model": ".model", "count_flops": ".model",
    "count_params": ".model",
    "PROXIES": ".proxies", "proxy_scores": ".proxies",
    "PatternSpec": ".spec", "make_spec": ".spec",
    "STEMS": ".stems", "Stem": ".stems", "default_stem": ".stems",
    "ResumePoint": ".train", "TrainResult": ".train", "Trained": ".train", "Trainer": ".train",
    "train": ".train", "evaluate": ".train", "resolve_device": ".train",
    "Normalisation": ".handoff", "RunFolder": ".handoff", "export_program": ".handoff",
    "save_weights": ".handoff",
})
