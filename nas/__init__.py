"""skipnas engine: data, model builder, training, studies, analysis, reports, export, CLI."""
from .spec import PatternSpec, build_model, make_spec

__all__ = ["PatternSpec", "build_model", "make_spec"]
