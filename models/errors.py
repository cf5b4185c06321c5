"""The errors the model room raises on purpose: the caller's input, not a bug.

Entry points report them as one line (cli/commandline.py); any other exception
from a builder keeps its traceback.
"""


class ModelOptionError(ValueError):
    """A model name or option the registry refuses: the caller's input, not a bug (callers may report it as one line)."""


class WeightsError(ModelOptionError):
    """A weights name, file or card that cannot be used: reported as one line."""
