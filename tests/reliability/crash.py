"""A callback that SIGKILLs its own training process at a given optimizer step.

The resume test needs a run killed mid-epoch. Killing it from outside races
the run (on a loaded machine the poller may wake only after the run has
ended); killing it from inside, at a fixed step, is the same SIGKILL every
time. Put on a run with ``+callbacks.crash._target_=crash.SigkillAt
+callbacks.crash.step=N`` and ``tests/reliability`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import signal

from lightning.pytorch.callbacks import Callback


class SigkillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
