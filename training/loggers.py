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
  the killed run logged them after its last checkpoint).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger

from core.files import write_text


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

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = os.path.join(self.log_dir, "metrics.csv")
        kept, header = [], []
        if self.purge_step is not None and os.path.isfile(path):  # a resume: read what the writer would delete
            with open(path, newline="") as file:
                reader = csv.DictReader(file)
                header = list(reader.fieldnames or [])
                kept = [row for row in reader if not row.get("step") or int(float(row["step"])) < self.purge_step]
        with warnings.catch_warnings():  # "exists and is not empty": the run dir holds the config and events too
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = super().experiment  # Lightning's writer removes metrics.csv here
        if header:
            text = io.StringIO(newline="")
            rows = csv.DictWriter(text, fieldnames=header)
            rows.writeheader()
            rows.writerows(kept)
            write_text(Path(path), text.getvalue())  # atomic, never through a link
            writer.metrics_keys = header  # new columns are added by rewriting the header, as Lightning does
        return writer
