"""The one exception type for a user's mistake.

Every check of user input raises `ConfigError` with one sentence that names the bad value and
the fix. Command-line entry points catch it and print that sentence alone, without a traceback.
"""


class ConfigError(ValueError):
    """A user's mistake (bad option, missing data, wrong shape), explained in one sentence."""


class NonFiniteError(ConfigError):
    """Training stopped: too many consecutive steps had a non-finite loss or gradient."""
