"""The ``lightning.Trainer`` a config asks for, as this machine can run it.

``trainer.precision`` is resolved here (``auto``, bf16 refused on a CPU that emulates it:
``training.performance.usable_precision``), ``trainer.max_steps`` is ours (``StopAtStep``), and a
Trainer Lightning refuses to build on this machine (``trainer=gpu`` without a GPU,
``trainer.devices=0``) is the user's to fix: one line, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException

from core.errors import UserError

from .callbacks import StopAtStep
from .performance import usable_precision


def build_trainer(make: Callable[..., L.Trainer], settings: Mapping, **kwargs) -> L.Trainer:
    """``make(**kwargs)`` (the config's Trainer, e.g. Hydra's ``instantiate`` of the ``trainer`` node) with
    the arguments ``settings`` (that node) needs on this machine added to ``kwargs``."""
    if settings.get("precision") is not None:
        kwargs.setdefault("precision", usable_precision(settings["precision"], settings.get("accelerator", "auto")))
    if settings.get("max_steps") not in (None, -1):  # Lightning's counts optimizer steps of every optimizer
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), StopAtStep(settings["max_steps"])]
        kwargs["max_steps"] = -1
    try:
        return make(**kwargs)
    except Exception as error:
        cause = error.__cause__ if error.__cause__ is not None else error  # a wrapper's (Hydra's) inner error
        if not isinstance(cause, MisconfigurationException):
            raise
        text = str(cause).strip().splitlines()[0]
        if "not available" in text or "No supported gpu backend" in text:
            raise UserError(f"trainer.accelerator={settings.get('accelerator')!r}: this machine has no GPU "
                            f"(Lightning: {text}); run on the CPU with trainer=cpu") from None
        raise UserError(f"trainer: {text}") from None
