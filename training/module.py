"""The LightningModule that makes any zoo model an image classifier.

It takes a built ``nn.Module`` and partial optimizer / scheduler factories
(completed here with the parameters and the run length; the optimizer is built
once when the module is, so that a value torch refuses is one line before
anything is written: ``check_optimizer``), computes the loss,
adds the auxiliary heads' losses when a model returns them (GoogLeNet), and
logs ``train/``, ``val/`` and ``test/`` metrics computed by torchmetrics.
An explicit weight penalty (``regularization``) is added to the training
loss and logged as ``train/penalty``. The test epoch computes the full
report that ``evaluate.py`` writes: top-1 and top-5 accuracy, macro
precision / recall / F1, per-class accuracy and the confusion matrix.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from core.errors import UserError, check_number

from .callbacks import steps_planned
from .schedulers import complete

# What an optimizer's settings must be beyond what torch.optim checks itself (negative rates and decays,
# betas outside [0, 1), ...: torch's own words, see check_optimizer). Each is a value torch accepts and
# no run could want.
OPTIMIZER_RULES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "lr": ("a number > 0", lambda v: v > 0),  # 0: nothing trains, and the run still "completes"
    "momentum": ("a number in [0, 1)", lambda v: 0 <= v < 1),  # 1: past gradients never fade, the steps grow
    "alpha": ("a number in [0, 1)", lambda v: 0 <= v < 1),  # RMSprop's 1: the squared-gradient mean stays 0
    "eps": ("a number > 0", lambda v: v > 0),  # 0: a parameter with a zero gradient gets 0/0 = nan
}


def check_optimizer(factory: Callable[..., torch.optim.Optimizer], params: Iterable[torch.Tensor]) -> None:
    """Build the optimizer ``factory`` makes once, on ``params``, to refuse its settings before a run starts.

    Every setting whose default is a number must be a finite one (torch takes ``inf`` and, in SGD, ``nan``);
    ``OPTIMIZER_RULES`` add what torch does not check. The rest is torch's: the ValueError (or TypeError)
    its constructor raises becomes one line naming the key, in torch's words, with torch's default for it.
    """
    function, settings = getattr(factory, "func", factory), getattr(factory, "keywords", {})  # a plain callable too
    name = getattr(function, "__name__", repr(function))
    defaults = {key: p.default for key, p in inspect.signature(function).parameters.items()
                if p.default is not p.empty}
    for key, value in settings.items():
        if key in OPTIMIZER_RULES:
            check_number(f"optimizer.{key}", value, *OPTIMIZER_RULES[key])
        elif isinstance(defaults.get(key), (int, float)) and not isinstance(defaults[key], bool):
            check_number(f"optimizer.{key}", value, "a number")
    try:
        factory(params=list(params))
    except (ValueError, TypeError) as error:  # torch's argument checks; anything else is a bug: its traceback
        said = (str(error).strip().splitlines() or [type(error).__name__])[0]
        value = said.rpartition(": ")[2]  # torch ends each such message with the value: "Invalid eps value: -1"

        def holds(given: Any) -> bool:
            items = given if isinstance(given, Sequence) and not isinstance(given, str) else [given]
            return any(str(item) == value for item in items)

        keys = [key for key, given in settings.items() if holds(given)]
        if len(keys) > 1:  # two settings of the same value: the one torch names
            keys = [key for key in keys if key in said]
        if len(keys) != 1:
            raise UserError(f"optimizer: {name} refuses its settings: {said}") from None
        key = keys[0]
        default = f" (its default: {defaults[key]!r})" if key in defaults else ""
        raise UserError(f"optimizer.{key}={settings[key]!r} is not valid for {name}: {said}{default}") from None


class ImageClassifier(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: functools.partial | None = None,
        scheduler: functools.partial | None = None,
        scheduler_interval: str = "step",
        loss: nn.Module | None = None,
        regularization: nn.Module | None = None,
        num_classes: int = 10,
        aux_loss_weight: float = 0.3,
        config: dict | None = None,
    ) -> None:
        """``config``: the run's resolved configuration as plain containers;
        saved in every checkpoint so that ``evaluate.py`` and resume can rebuild
        the model and data without pickled objects."""
        super().__init__()
        if scheduler_interval not in ("step", "epoch"):
            raise UserError(f"scheduler.interval must be 'step' or 'epoch', got {scheduler_interval!r}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "loss", "regularization"], logger=False)
        self.net = net
        if optimizer is not None:  # the run's own is built in configure_optimizers, where the Trainer put the weights
            check_optimizer(optimizer, net.parameters())
        self.segment_start_step = 0  # the optimizer step this fit started at (on_train_start)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss_fn = loss if loss is not None else nn.CrossEntropyLoss()
        self.penalty = regularization if regularization is not None and regularization.active else None
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        # compute_groups=False: torchmetrics otherwise merges metrics whose states are equal after the first
        # batch, and on a first batch with no error top-1, top-5 and the per-class counts are equal: the macro
        # precision / recall / F1 then reported top-5 numbers (issue 22). Each metric keeps its own state.
        self.test_metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "acc_top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
                "precision_macro": MulticlassPrecision(num_classes, average="macro"),
                "recall_macro": MulticlassRecall(num_classes, average="macro"),
                "f1_macro": MulticlassF1Score(num_classes, average="macro"),
                "per_class_acc": MulticlassAccuracy(num_classes, average=None),
                "confusion_matrix": MulticlassConfusionMatrix(num_classes),
            },
            compute_groups=False,
        )
        self.test_results: dict[str, Any] = {}
        self.epoch_loss_sum, self.epoch_examples, self.epoch_logged = torch.zeros(()), 0, False  # on_train_epoch_start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        out = self.net(x)
        if isinstance(out, tuple):  # (logits, [aux logits]) from models with auxiliary heads, train mode only
            logits, aux = out
            loss = self.loss_fn(logits, y) + self.hparams.aux_loss_weight * sum(self.loss_fn(a, y) for a in aux)
        else:
            logits, loss = out, self.loss_fn(out, y)
        return loss, logits, y

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, logits, y = self._step(batch)
        # Per step, device work only (issue 21): no value is read back to the host, which on a GPU waits for
        # it, and self.log (~0.3 ms of Python a call, 1.5 ms for a metric object) runs only where its value is
        # written: the step loss at Lightning's logging steps, the epoch's mean loss and accuracy, accumulated
        # on the device, at the epoch's last batch. No step value goes to the progress bar: Lightning reads
        # those back at every step.
        self.train_acc.update(logits.detach(), y)
        self.epoch_loss_sum = self.epoch_loss_sum + loss.detach() * len(y)
        self.epoch_examples += len(y)
        every = self.trainer.log_every_n_steps
        # where Lightning writes step values (global_step counts this step after it)
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False)
        if self.trainer.is_last_batch:
            self.log_train_epoch()
        if self.penalty is not None:  # an explicit term of the objective, logged on its own
            penalty = self.penalty(self.net)
            self.log("train/penalty", penalty, on_step=False, on_epoch=True, sync_dist=True)
            loss = loss + penalty
        return loss

    def log_train_epoch(self) -> None:
        """The epoch's mean data loss (comparable with val/loss) and accuracy, logged once."""
        self.log("train/loss", self.epoch_loss_sum / self.epoch_examples, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        self.epoch_logged = True

    def on_train_epoch_start(self) -> None:
        self.train_acc.reset()
        self.epoch_loss_sum, self.epoch_examples, self.epoch_logged = torch.zeros((), device=self.device), 0, False

    def on_train_epoch_end(self) -> None:
        # an epoch cut short (max_steps): logged here, after the callbacks
        if not self.epoch_logged and self.epoch_examples:
            self.log_train_epoch()

    def on_validation_epoch_start(self) -> None:
        self.val_acc.reset()

    def validation_step(self, batch, batch_idx: int) -> dict:
        loss, logits, y = self._step(batch)
        self.val_acc.update(logits, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return {"logits": logits.detach(), "target": y}  # for callbacks (confusion matrix)

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        self.val_acc_best(acc)
        self.log("val/acc", acc, prog_bar=True, sync_dist=True)
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def on_train_start(self) -> None:
        self.val_acc_best.reset()  # the sanity check's epoch must not count
        self.segment_start_step = self.trainer.global_step  # > 0 after a resume: train.py's throughput counts from here

    def test_step(self, batch, batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        self.test_metrics.update(logits, y)
        self.log("test/loss", loss, on_step=False, on_epoch=True, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        results = self.test_metrics.compute()
        for name in ("acc", "acc_top5", "precision_macro", "recall_macro", "f1_macro"):
            self.log(f"test/{name}", results[name], sync_dist=True)
        self.test_results = {name: value.cpu().tolist() for name, value in results.items()}
        self.test_metrics.reset()

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError("no optimizer configured: this module was built for evaluation only")
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        interval = self.hparams.scheduler_interval
        length = steps_planned(self.trainer) if interval == "step" else self.trainer.max_epochs
        scheduler = complete(self.scheduler_factory, optimizer, int(length))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
