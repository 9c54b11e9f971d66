"""User-facing errors: the CLI prints these as one line and exits non-zero."""
from search_spaces import PatternError


class UserError(ValueError):
    """Bad input from the user (data, config, spec, storage); the message names the problem."""


class DataError(UserError):
    """A dataset is missing, corrupt or unknown."""


class ConfigError(UserError):
    """A study config file has an unknown key or a bad value."""


class SpecError(UserError):
    """A pattern spec file is malformed."""


USER_ERRORS = (UserError, PatternError)
