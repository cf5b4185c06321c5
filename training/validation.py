"""Checks of configured values, run before anything is built.

Each rule names a config key, what it must be, and a predicate; a value
that breaks one gets one line naming the key, the value and what would be
valid. Keys absent from the composed config (a group without them) are
skipped. Options chosen from a group and model switches are checked where
they are defined (training/cli.py, the model builders).
"""

from __future__ import annotations

from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


RULES: list[tuple[str, str, Callable[[Any], bool]]] = [
    ("seed", "an integer", _integer),
    ("optimizer.lr", "a number > 0", lambda v: _number(v) and v > 0),
    ("optimizer.weight_decay", "a number >= 0", lambda v: _number(v) and v >= 0),
    ("optimizer.momentum", "a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    ("data.batch_size", "an integer >= 1", lambda v: _integer(v) and v >= 1),
    ("data.num_workers", "an integer >= 0", lambda v: _integer(v) and v >= 0),
    ("data.image_size", "an integer >= 1", lambda v: _integer(v) and v >= 1),
    ("trainer.max_epochs", "an integer >= 1", lambda v: _integer(v) and v >= 1),
    ("model.dropout", "a number in [0, 1)", lambda v: v is None or (_number(v) and 0 <= v < 1)),
    ("model.batchnorm", "true or false", lambda v: v is None or isinstance(v, bool)),
    ("loss.label_smoothing", "a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    ("regularization.strength", "a number >= 0", lambda v: _number(v) and v >= 0),
    ("callbacks.last_checkpoint.every_n_train_steps", "null or an integer >= 1",
     lambda v: v is None or (_integer(v) and v >= 1)),
]

_ABSENT = object()


def check_config(cfg: DictConfig) -> None:
    """Raise ValueError (one line) for the first configured value that breaks a rule."""
    for key, valid, ok in RULES:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if value is _ABSENT:
            continue
        if not ok(value):
            raise ValueError(f"{key}={value!r} is not valid: it must be {valid}")
