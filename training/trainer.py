"""The ``lightning.Trainer`` a config asks for, as this machine can run it.

``trainer.precision`` is resolved here (``auto``, bf16 refused on a CPU that emulates it:
``training.performance.usable_precision``), ``trainer.max_steps`` is ours (``StopAtStep``), and a
Trainer Lightning refuses to build on this machine (``trainer=gpu`` without a GPU,
``trainer.devices=0``) is the user's to fix: one line, not a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException

from core.errors import UserError, first_line

from .callbacks import StopAtStep
from .performance import usable_precision


def build_trainer(trainer_class: type[L.Trainer], options: Mapping, **kwargs) -> L.Trainer:
    """``trainer_class(**options, **kwargs)`` (the config's Trainer: its ``trainer`` node's values), with what
    this machine needs: ``precision`` resolved, ``max_steps`` ours."""
    options = dict(options)
    if options.get("precision") is not None and "precision" not in kwargs:
        options["precision"] = usable_precision(options["precision"], options.get("accelerator", "auto"))
    if options.get("max_steps") not in (None, -1):  # Lightning's counts optimizer steps of every optimizer
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), StopAtStep(options["max_steps"])]
        options["max_steps"] = -1
    try:
        return trainer_class(**{**options, **kwargs})
    except MisconfigurationException as error:
        text = first_line(error)
        if "not available" in text or "No supported gpu backend" in text:
            raise UserError(f"trainer.accelerator={options.get('accelerator')!r}: this machine has no GPU "
                            f"(Lightning: {text}); run on the CPU with trainer=cpu") from None
        raise UserError(f"trainer: {text}") from None
