"""Lightning's TensorBoard and CSV loggers, adjusted to how runs here are read.

- ``TensorBoardLogger`` leaves out Lightning's ``epoch`` scalar (every chart's
  x axis is the step already) and files each metric under the tag that puts
  it in its place on TensorBoard's first screen (``tensorboard_tag``): the
  Time Series and Scalars tabs sort tag groups (the part before the first
  ``/``) by name, so loss and accuracy (``train/``, ``val/``) come first, the
  numbers to watch (``watch/``: learning rate, per-step loss and the
  diagnostics) next, the test numbers (one point each, ``x_test/``) after
  them, and the pictures and histograms of ``callbacks=diagnostics``
  (``xray/``) last. metrics.json, the CSV file and the progress bar keep the
  names as logged (``train/lr``, ``test/acc``).
- ``CSVLogger`` keeps a resumed run's history: Lightning's deletes an existing
  ``metrics.csv`` when it starts, so a resumed run lost its first epochs. Here
  the rows logged before the checkpoint the run resumes from stay (rows at or
  after ``purge_step`` are dropped, as TensorBoard's ``purge_step`` does, since
  the killed run logged them after its last checkpoint): they are read before
  Lightning's writer is made and handed back to it through its own
  ``log_metrics`` and ``save``, the writer a custom logger's ``experiment``
  property exposes.

Both use what Lightning documents for custom loggers (overriding ``log_metrics``
and ``experiment``, ``rank_zero_experiment``); nothing private.
"""

from __future__ import annotations

import csv
import os
import warnings

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment


def tensorboard_tag(name: str) -> str:
    """``train/lr``, ``train/lr_pg<i>``, ``train/loss_step`` and a tag without a group (``time_to_target_s``) ->
    ``watch/...``; ``test/<metric>`` -> ``x_test/<metric>``; everything else as it is."""
    group, _, rest = name.partition("/")
    if not rest or name == "train/loss_step" or name.startswith("train/lr"):
        return f"watch/{rest or name}"
    return f"x_test/{rest}" if group == "test" else name


class TensorBoardLogger(LightningTensorBoardLogger):
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        super().log_metrics({tensorboard_tag(k): v for k, v in metrics.items() if k != "epoch"}, step)


class CSVLogger(LightningCSVLogger):
    def __init__(self, *args, purge_step: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.purge_step = purge_step
        self.started = False  # whether this run's writer was made (the rows it keeps restored into it)

    @property
    @rank_zero_experiment
    def experiment(self):
        if self.started:
            return super().experiment
        self.started = True
        path = os.path.join(self.log_dir, "metrics.csv")
        kept = None
        if self.purge_step is not None and os.path.isfile(path):  # a resume: read what the writer would delete
            with open(path, newline="") as file:
                kept = [row for row in csv.DictReader(file)
                        if not row.get("step") or int(float(row["step"])) < self.purge_step]
            os.remove(path)  # the kept rows are written back below, by the writer, which then appends to them
        with warnings.catch_warnings():  # "exists and is not empty": the run dir holds the config and events too
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = super().experiment  # Lightning's writer removes a metrics.csv it finds here
        for row in kept or []:  # as read, text, empty cells too: written back as they were, under the same header
            writer.log_metrics({key: value for key, value in row.items() if key != "step"}, row["step"])
        if kept:
            writer.save()
        return writer
