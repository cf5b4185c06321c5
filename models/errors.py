"""The errors the model room raises on purpose: the caller's input, not a bug.

Each has ``user_error = True``: an entry point reports it as one line (exit 2);
any other exception from a builder keeps its traceback. ``ModelOptionError``
lives in layers.py, so that a model file copied with layers.py stays whole.
"""

from .layers import ModelOptionError

__all__ = ["ModelOptionError", "WeightsError"]


class WeightsError(ModelOptionError):
    """A weights name, file or card that cannot be used: reported as one line."""
