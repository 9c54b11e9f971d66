"""The pure package's one error, in a module of its own so that `styles` and `pattern` share it."""


class PatternError(ValueError):
    """A pattern (or its dict form) is not valid."""
