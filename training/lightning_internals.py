"""The one place where the zoo reaches past Lightning's public API.

Each patch here has no public way to do what it does; its docstring says what Lightning does, why the zoo
differs, and the Lightning version it was checked against (2.6.6, ``pip show lightning``).
``tests/training/test_lightning_internals.py`` exercises the Lightning behaviour each one relies on, so an
upgrade that changes it fails there first, by name, instead of somewhere downstream.

Where the zoo departs from Lightning's defaults through its public API, and so not here:
``training/loggers.py`` (the loggers' ``log_metrics`` and ``experiment``), ``training/callbacks.py``
(``Checkpoint``'s ``state_key`` and ``format_checkpoint_name``, callback hooks, ``pl_module.log``),
``training/checkpoints.py`` (a ``CheckpointIO`` plugin), ``reporting/records.py`` (HPARAMS written through the
TensorBoard logger's ``experiment``, the writer Lightning hands out for what its ``log_hyperparams`` does
otherwise).
"""

from __future__ import annotations

from typing import Any

import lightning as L


def bar_epoch(trainer: L.Trainer, current_epoch: int) -> str:
    """``Epoch 3/30`` for Lightning's ``current_epoch`` 2 of ``max_epochs`` 30; ``Epoch 3`` with no epoch limit."""
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    return f"Epoch {current_epoch + 1}" + (f"/{epochs}" if epochs else "")


def count_epochs_from_one(bar: Any, trainer: L.Trainer) -> None:
    """Make Lightning's progress bar ``bar`` say "Epoch 1/5" for the first of 5 epochs, as the epoch lines do.

    What Lightning does (2.6.6): the bars write the epoch as it counts it, from 0, and leave out the limit
    (``TQDMProgressBar``: "Epoch 0"; ``RichProgressBar``: "Epoch 0/4"). Why we differ: every other line a
    user reads (the epoch line, checkpoint names, the divergence message) counts from 1, and a bar that
    says 0 when the line below says 1 reads as an off-by-one bug. Why no public API: the text is built
    inside the bars' ``on_train_epoch_start``, with no argument or overridable public method, and the bar
    is the trainer's own (``enable_progress_bar``), so it cannot be replaced by a subclass from a config
    without breaking ``trainer.enable_progress_bar=false``. So, on this instance only:

    - ``TQDMProgressBar``: its public ``on_train_epoch_start`` is wrapped; after it has set "Epoch N" on
      ``train_progress_bar``, the description is set again, counted from 1;
    - ``RichProgressBar``: its private ``_get_train_description(current_epoch)``, which that hook calls, is
      replaced (padded to the validation bar's width, as Lightning pads it).

    Any other bar is left as it is."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    if isinstance(bar, RichProgressBar):
        bar._get_train_description = lambda epoch: f"{bar_epoch(trainer, epoch):{len(bar.validation_description)}}"
    elif isinstance(bar, TQDMProgressBar):
        start = bar.on_train_epoch_start

        def on_train_epoch_start(trainer_: L.Trainer, *args) -> None:
            start(trainer_, *args)
            bar.train_progress_bar.set_description(bar_epoch(trainer, trainer_.current_epoch))

        bar.on_train_epoch_start = on_train_epoch_start
