"""Connection patterns, backprop distances, the paper's templates and the search spaces.

Pure Python + numpy: never imports torch or optuna.
"""
from .derive import Derivation, OffsetsDerivation, TemplateDerivation, at_depth, derivation_of
from .distances import DistanceStats, distance_matrix, distance_stats, global_inputs
from .features import PatternFeatures, offsets_in_words, pattern_features, reads_of_input
from .pattern import MAX_LAYERS, Block, Pattern, PatternError, single_block
from .registry import Registry
from .spaces import SEARCH_SPACES, SearchSpace, make_space
from .styles import DEFAULT_STYLE, STYLES, Style, dense_connections
from .templates import (
    BLOCK_OUTPUTS,
    TEMPLATES,
    Template,
    TemplateRow,
    budgeted_block,
    budgeted_pattern,
    default_k,
    template_pattern,
    template_table,
    with_block_output,
)

__all__ = [
    "DEFAULT_STYLE", "MAX_LAYERS", "STYLES", "Style", "dense_connections",
    "Block", "Pattern", "PatternError", "single_block",
    "DistanceStats", "distance_matrix", "distance_stats", "global_inputs",
    "PatternFeatures", "offsets_in_words", "pattern_features", "reads_of_input",
    "BLOCK_OUTPUTS", "TEMPLATES", "Template", "TemplateRow", "budgeted_block", "budgeted_pattern",
    "default_k", "template_pattern", "template_table", "with_block_output",
    "SEARCH_SPACES", "SearchSpace", "make_space", "Registry",
    "Derivation", "OffsetsDerivation", "TemplateDerivation", "at_depth", "derivation_of",
]
