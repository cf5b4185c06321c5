"""Callbacks that make runs safe to kill, resume and trust.

- ``RNGStates`` saves the random generators' states in every checkpoint and
  restores them on resume (Lightning restores weights, optimizer, scheduler
  and loop counters, but not the RNGs that drive dropout and augmentation).
- ``DivergenceGuard`` stops training at the first non-finite loss (on the
  CPU before its backward pass and optimizer step can write NaN into the
  weights; on a GPU, which a per-step read would stall, at the next read of
  what the device recorded, and always before a checkpoint is written), so
  the last checkpoint (if one was written before) stays the last good one;
  its message names that checkpoint, or says that there is none.
- ``LearningRate`` logs ``train/lr`` whatever the optimizer (Lightning's
  ``LearningRateMonitor`` names it by the optimizer's class, ``lr-Adam``,
  ``lr-SGD``, so a sweep over optimizers had no shared chart).
- ``Checkpoint`` is Lightning's ``ModelCheckpoint`` with epochs counted from 1
  in file names (as every line a user reads counts them), and one file, not
  two copies, when the best checkpoint is also the last.
- ``StopAtStep`` ends training after a number of optimizer steps
  (``trainer.max_steps`` in a config): Lightning's own ``max_steps`` makes a
  resumed run differ from an uninterrupted one (see the class).
- ``TimeToTarget`` records the wall time from the end of the first training
  step (compiling and start-up left out) to the first validation whose
  metric reaches a target: a speedrun's figure.
"""

from __future__ import annotations

import math
import os
import random
import time

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from core.errors import check_number

from .checkpoints import RunCheckpointIO


class DivergenceError(RuntimeError):
    """The loss stopped being a finite number."""


class RNGStates(L.Callback):
    """Python, NumPy, torch (CPU and CUDA) RNG states in the checkpoint, as
    plain tensors and ints so the checkpoint still loads with weights_only.

    They are captured when the checkpoint is written and put back as soon
    as Lightning restores the checkpoint: before the training data loader
    draws its shuffling seed (Lightning skips the sanity check on resume), so
    a run resumed from an epoch-end checkpoint sees the same batch order,
    augmentations and dropout masks as one that never stopped.
    """

    def state_dict(self) -> dict:
        version, state, gauss = random.getstate()
        kind, keys, position, has_gauss, cached = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached": float(cached)},
            "python": {"version": version, "state": list(state), "gauss": gauss},
        }

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"],
                             n["has_gauss"], n["cached"]))
        p = state["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


class DivergenceGuard(L.Callback):
    """Raise ``DivergenceError`` at the first NaN or infinite training loss, naming the step and the
    likely causes.

    Reading a loss on the host waits for the device that computes it. On the CPU that costs nothing, so
    every loss is read before its backward pass (``every_n_steps`` 1) and the NaN never reaches the
    weights. On a GPU a read per step would stall its queue at every step (issue 21), so each loss's
    finiteness is recorded on the device and read every ``every_n_steps`` steps
    (``trainer.log_every_n_steps``), before each validation, at the end of each epoch and of training,
    and before every checkpoint is written: the error still names the first non-finite step exactly,
    and no checkpoint is written after it (the weights in memory may be NaN by then; the newest
    checkpoint holds the last finite ones). ``every_n_steps``: null (as above) or a number of steps.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        if every_n_steps is not None:
            check_number("callbacks.divergence_guard.every_n_steps", every_n_steps, "null or a positive integer",
                         lambda v: v >= 1, integer=True)
        self.every_n_steps = every_n_steps
        self._steps: list[tuple[int, int, int]] = []  # (step, epoch, batch) of each loss recorded since the last read
        self._first: torch.Tensor | None = None  # on the device: index into _steps of the first non-finite loss, or -1
        self._value: torch.Tensor | None = None  # on the device: that loss
        self._batch = 0  # the batch being trained, counted in its epoch (on_train_batch_start's batch_idx)

    def interval(self, trainer: L.Trainer, loss: torch.Tensor) -> int:
        if self.every_n_steps is not None:
            return self.every_n_steps
        return 1 if loss.device.type == "cpu" else max(1, trainer.log_every_n_steps)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch = batch_idx  # on_before_backward is not told which batch it is in

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        where = (trainer.global_step, trainer.current_epoch, self._batch)
        if self.interval(trainer, loss) == 1 and not self._steps:
            value = loss.item()
            if not math.isfinite(value):
                raise self.error(trainer, value, *where)
            return
        if self._first is None or self._first.device != loss.device:
            self._first = torch.full((), -1, dtype=torch.int64, device=loss.device)
            self._value = torch.zeros((), device=loss.device)
        new = ~torch.isfinite(loss) & (self._first < 0)  # no host read: all three stay on the device
        self._first = torch.where(new, len(self._steps), self._first)
        self._value = torch.where(new, loss, self._value)
        self._steps.append(where)
        if len(self._steps) >= self.interval(trainer, loss):
            self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Read what was recorded since the last read (one wait for the device); raise at a non-finite loss."""
        if not self._steps:
            return
        first, steps = int(self._first), self._steps
        self._steps = []
        self._first.fill_(-1)
        if first >= 0:
            raise self.error(trainer, float(self._value), *steps[first])

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.check(trainer)  # before the file is written: no checkpoint after a non-finite loss

    @staticmethod
    def error(trainer: L.Trainer, value: float, step: int, epoch: int, batch: int) -> DivergenceError:
        lrs = sorted({group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups})
        causes = f"the learning rate ({', '.join(f'{lr:g}' for lr in lrs)}) is likely too high"
        if "16" in str(trainer.precision):
            causes += f", or the {trainer.precision} loss scale overflowed (try precision=32-true or bf16-mixed)"
        saved = sorted({path for callback in trainer.checkpoint_callbacks
                        for path in (callback.last_model_path, callback.best_model_path)
                        if path and os.path.isfile(path)},
                       key=os.path.getmtime)
        kept = (f"{saved[-1]} holds the last weights saved before it (finite)" if saved
                else "no checkpoint was saved before it, so no weights were kept")
        return DivergenceError(
            f"training diverged: loss is {value} in epoch {epoch + 1}, batch {batch + 1} "  # counted from 1
            f"(after {step} optimizer steps); {causes}; "
            f"lower optimizer.lr or clip gradients (trainer.gradient_clip_val=1.0); {kept}."
        )


class Checkpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, with two changes a user sees:

    - ``{epoch}`` in the file name counts from 1: ``epoch010-...ckpt`` is the tenth epoch, the one the
      epoch line calls ``epoch 10/10`` (Lightning counts from 0);
    - when a fit ends with the best checkpoint saved at the same step as ``last.ckpt`` (the last epoch was
      the best), the best file becomes a hard link to ``last.ckpt``: one file on disk under both names,
      where there were two full-size copies of the same weights. Only where the trainer's checkpoint IO is
      ``training.checkpoints.RunCheckpointIO`` (train.py's): it writes every save as a new file renamed
      into place, so a later write to either name (a resumed run's next ``last.ckpt``) makes a new file and
      never changes the other name's. Lightning's own IO may write into the existing file (when its
      temporary file lies on another file system), which would change both names: with it, both copies stay.

    Its state keeps ``ModelCheckpoint``'s key, so a run checkpointed before it existed resumes with its
    best score and path."""

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint``'s key for the same settings: Lightning's key names the class
        (``Checkpoint{'monitor': ...}``); runs saved by ``ModelCheckpoint`` resume as they were."""
        return ModelCheckpoint.__name__ + super().state_key.removeprefix(type(self).__qualname__)

    def format_checkpoint_name(self, metrics: dict, filename: str | None = None, ver: int | None = None,
                               prefix: str | None = None) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        best = self.best_model_path
        if (not trainer.is_global_zero or not self.monitor or not best or not os.path.isfile(best)
                or not isinstance(trainer.strategy.checkpoint_io, RunCheckpointIO)):  # a write may go into the file
            return
        for other in trainer.checkpoint_callbacks:
            # an unmonitored checkpoint's best_model_path is the file it saved last (last.ckpt)
            last = getattr(other, "last_model_path", "") or getattr(other, "best_model_path", "")
            if (other is self or getattr(other, "monitor", None) or not last or not os.path.isfile(last)
                    or os.path.samefile(best, last)):
                continue
            step = saved_at(best)
            if step is None or step != saved_at(last):
                continue
            partial = f"{best}.link"
            try:
                os.link(last, partial)
                os.replace(partial, best)  # the same weights, saved at the same step: one file under both names
            except OSError:  # a file system without hard links: both copies stay
                if os.path.lexists(partial):
                    os.unlink(partial)
            return


def saved_at(path: str) -> tuple | None:
    """(epoch, global_step) that a Lightning checkpoint file records, read without reading its tensors (they are
    memory-mapped, not loaded); None for a file that does not load."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 -- a damaged or foreign file: no link, both copies stay
        return None
    return checkpoint.get("epoch"), checkpoint.get("global_step")


class LearningRate(L.Callback):
    """``train/lr`` at the start of each epoch (and each step with ``logging_interval="step"``): the first
    parameter group's lr; further groups, where a model has them, as ``train/lr_pg1``, ...; nothing
    without a logger."""

    def __init__(self, logging_interval: str = "epoch") -> None:
        if logging_interval not in ("epoch", "step"):
            raise ValueError(f"logging_interval must be 'epoch' or 'step', got {logging_interval!r}")
        self.logging_interval = logging_interval

    def _log(self, trainer: L.Trainer) -> None:
        if not trainer.loggers or not trainer.optimizers:
            return
        groups = trainer.optimizers[0].param_groups
        values = {"train/lr" if i == 0 else f"train/lr_pg{i}": float(group["lr"]) for i, group in enumerate(groups)}
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.logging_interval == "epoch":
            self._log(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.logging_interval == "step":
            self._log(trainer)


class TimeToTarget(L.Callback):
    """``time_to_target_s`` in the loggers and, from the end of that training epoch, in
    ``trainer.callback_metrics`` (and so in train.py's metrics.json): seconds from the end of the first
    training step to the end of the first validation where ``monitor`` >= ``target``; absent when the target
    is never reached. The first step is left out because it holds torch.compile's compiling and cuDNN's
    autotuning; the first validation's compile is counted."""

    def __init__(self, monitor: str = "val/acc", target: float = 0.94) -> None:
        self.monitor, self.target = monitor, target
        self.start: float | None = None
        self.seconds: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.start is None:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self.start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if (trainer.sanity_checking or self.start is None or self.seconds is not None or value is None
                or float(value) < self.target):
            return
        self.seconds = time.perf_counter() - self.start
        for logger in trainer.loggers:
            logger.log_metrics({"time_to_target_s": self.seconds}, step=trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # into trainer.callback_metrics by Lightning's logging from a callback, which on_validation_end (the first hook
        # that sees the monitor) may not use; an epoch's validations, its final one too, run before this hook. The
        # loggers have it already, at its own step. batch_size=1: the value as measured, not averaged over a batch
        if self.seconds is not None:
            pl_module.log("time_to_target_s", self.seconds, logger=False, batch_size=1)


class StopAtStep(L.Callback):
    """Stop training once ``max_steps`` optimizer steps are done, validating the model it stops with.

    A config's ``trainer.max_steps`` becomes this callback, not Lightning's ``Trainer(max_steps=)``:
    with ``max_steps`` set, Lightning 2.6 treats every resume as a restart inside the loop ("iteration-based
    training"): from an epoch-end checkpoint (``last.ckpt``) it replays that epoch's end hooks without a
    batch, counts the epoch twice and skips the next epoch's scheduler step, so a resumed run no longer
    matches an uninterrupted one (``tests/reliability/test_resume.py`` runs with ``max_steps`` and fails if
    this comes back). Lightning's ``max_steps`` also ends without validating the final weights; here the
    stop goes through ``trainer.should_stop``, which validates them (a checkpoint may keep them)."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps = check_number("trainer.max_steps", max_steps, "an integer >= 1", lambda v: v >= 1, integer=True)

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step >= self.max_steps:
            trainer.should_stop = True


def steps_planned(trainer: L.Trainer) -> int:
    """The optimizer steps this fit will take: Lightning's estimate (epochs x batches), capped by a
    ``StopAtStep`` among the callbacks."""
    steps = trainer.estimated_stepping_batches
    caps = [c.max_steps for c in trainer.callbacks if isinstance(c, StopAtStep)]
    return int(min([steps, *caps]))
