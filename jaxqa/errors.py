"""One exception type for every problem a user can fix.

The CLI prints these as a single line (no traceback): the message names the file, record or
flag at fault and says what to do.
"""


class JaxqaError(Exception):
    """A user-facing error whose message is complete on its own."""


class DataError(JaxqaError):
    """A data file is missing, malformed or holds a bad record."""


class BadRecord(DataError):
    """One record of a data file is unusable; `kind` names the problem in the load report."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class ModelError(JaxqaError):
    """A model directory or checkpoint cannot be used."""


class ConfigError(JaxqaError):
    """A flag or config value is invalid or inconsistent."""


class TrainingError(JaxqaError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


class Interrupted(JaxqaError):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint: a clean exit, resumable."""
