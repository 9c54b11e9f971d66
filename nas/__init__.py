"""skipnas engine: data, model builder, training, studies, analysis, reports, export, CLI.

Sub-packages: `nas.engine` (data, model, spec, train), `nas.search` (study configs, studies,
workers, samplers, the trial record), `nas.results` (analysis, report, dashboard, export).
`suggest_pattern` and `record_trial` put skipnas' spaces and trial record in a user's own
Optuna objective (docs/own_loop.md). Names are imported on first use, so `import nas` is fast
and torch-free.
"""
from ._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "PatternSpec": ".engine.spec", "make_spec": ".engine.spec", "build_model": ".engine.model",
    "train": ".engine.train", "load_config": ".search", "create_study": ".search",
    "run_worker": ".search", "analyze": ".results",
    "suggest_pattern": ".search", "record_trial": ".search",
})
