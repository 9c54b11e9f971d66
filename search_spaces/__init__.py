"""Connection patterns, backprop distances, the paper's templates and the search spaces.

Pure Python + numpy: never imports torch or optuna.
"""
from .distances import DistanceStats, distance_matrix, distance_stats, global_inputs
from .pattern import Block, Pattern, PatternError, single_block
from .templates import TEMPLATES, Template, default_k, get_template, template_pattern

__all__ = [
    "Block", "Pattern", "PatternError", "single_block",
    "DistanceStats", "distance_matrix", "distance_stats", "global_inputs",
    "TEMPLATES", "Template", "default_k", "get_template", "template_pattern",
]
