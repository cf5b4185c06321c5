"""One plain line per epoch, for logs that are files (SLURM jobs, ``> log 2>&1``).

A progress bar redrawn in place is unreadable in a file and, written to a
pipe, shows nothing until the run ends. ``EpochLog`` writes one line per
epoch through Python's logging, which Hydra sends to the console and to the
run dir's ``train.log``:

    epoch 3/30  train loss 1.2345 acc 0.5512  val loss 1.1021 acc 0.6034  lr 0.0985  812 img/s  elapsed 0:04:12  eta 0:37:48

When standard output is a terminal the progress bar stays and the line goes
to ``train.log`` only; when it is not, the bar is switched off and the line
goes to both. Epochs are counted from 1, as a person counts them.
"""  # noqa: E501 -- the epoch line is quoted whole

from __future__ import annotations

import logging
import math
import sys
import time
import warnings

import lightning as L

from core.formatting import human

from .lightning_internals import count_epochs_from_one

log = logging.getLogger("train")


def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def epoch_line(epoch: int, epochs: int | None, metrics: dict, lr: float | None, images_per_s: float,
               elapsed: float, eta: float | None) -> str:
    """The text of one epoch's line; a metric that was not logged is left out."""
    def pair(prefix: str) -> str:
        parts = [f"{name} {metrics[f'{prefix}/{name}']:.4f}" for name in ("loss", "acc")
                 if f"{prefix}/{name}" in metrics]
        return f"{prefix} " + " ".join(parts) if parts else ""

    fields = [f"epoch {epoch}/{epochs}" if epochs else f"epoch {epoch}", pair("train"), pair("val"),
              f"lr {lr:.4g}" if lr is not None else "", f"{images_per_s:.0f} img/s", f"elapsed {clock(elapsed)}",
              f"eta {clock(eta)}" if eta is not None else ""]
    return "  ".join(field for field in fields if field)


def quiet(verbose: bool) -> None:
    """What a run prints by default: our own lines, Lightning's warnings, none of its INFO chatter
    (GPU/TPU availability, the litlogger tip, "Restoring states ...") nor the FutureWarning that
    Lightning's batch collation raises on each run with this torch (``isinstance(treespec, LeafSpec)``).
    ``verbose=true`` keeps them all. Called by the entry points, never on import."""
    if verbose:
        return
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.profilers").setLevel(logging.INFO)  # a profiler asked for prints its report
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    # a resume writes there again
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # an epoch shorter than trainer.log_every_n_steps (digits: 23 batches): train/loss_step is then logged every few
    # epochs, and every curve a user reads is logged per epoch anyway
    warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging interval")


def model_line(name: str, params: int, macs: int, shape: tuple[int, ...]) -> str:
    """The one-line model summary printed instead of Lightning's table (``summarize.py`` has the rest)."""
    return f"model {name}: {human(params)} parameters, {human(macs)} MACs per {'x'.join(map(str, shape))} image"


SHOWN = ("acc", "loss", "acc_best", "acc_top5", "f1_macro")


def metrics_table(metrics: dict, digits: int = 4, shown: tuple[str, ...] = SHOWN) -> str:
    """The final val/ and test/ metrics of ``shown`` as a short table, rounded: one row per split, one
    column per metric (metrics.json keeps every metric, unrounded)."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        split, _, name = key.partition("/")
        if (split in ("val", "test") and name in shown and isinstance(value, (int, float))
                and not isinstance(value, bool)):
            rows.setdefault(split, {})[name] = value
    columns = [name for name in shown if any(name in row for row in rows.values())]
    if not columns:
        return ""
    cell = lambda v: "" if v is None else ("nan" if not math.isfinite(v) else f"{v:.{digits}f}")  # noqa: E731
    table = [["", *columns]] + [[split, *(cell(row.get(c)) for c in columns)] for split, row in rows.items()]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(text.rjust(width) if i else text.ljust(width)
                               for i, (text, width) in enumerate(zip(line, widths))).rstrip()
                     for line in table)


class EpochLog(L.Callback):
    """``run``: a name to start each line with (a sweep's run: ``optimizer=adam: epoch 3/30 ...``)."""

    def __init__(self, run: str = "") -> None:
        self.terminal = sys.stdout.isatty()
        self.prefix = f"{run}: " if run else ""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.terminal and trainer.progress_bar_callback is not None:
            trainer.progress_bar_callback.disable()  # frames of a bar are noise in a file
        elif trainer.progress_bar_callback is not None:
            count_epochs_from_one(trainer.progress_bar_callback, trainer)  # "Epoch 1/5", as the lines count

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start, self.first_epoch = time.perf_counter(), trainer.current_epoch  # a resumed run starts mid-way
        # a resume from a checkpoint inside an epoch continues it without on_train_epoch_start
        self.images, self.train_seconds, self.batch_start = 0, 0.0, None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.train_seconds, self.batch_start = 0, 0.0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.batch_start is not None:
            self.train_seconds += time.perf_counter() - self.batch_start
        self.images += len(batch[1]) if isinstance(batch, (tuple, list)) and len(batch) > 1 else 0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {name.removesuffix("_epoch"): float(value) for name, value in trainer.callback_metrics.items()
                   if value.numel() == 1}
        done = trainer.current_epoch + 1
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        elapsed = time.perf_counter() - self.start
        eta = elapsed / (done - self.first_epoch) * (epochs - done) if epochs else None
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        line = self.prefix + epoch_line(done, epochs, metrics, lr, self.images / max(self.train_seconds, 1e-9),
                                        elapsed, eta)
        if self.terminal:  # the bar owns the console: the line goes to train.log only
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.FileHandler):
                    handler.emit(log.makeRecord(log.name, logging.INFO, __file__, 0, line, None, None))
        else:
            log.info(line)
