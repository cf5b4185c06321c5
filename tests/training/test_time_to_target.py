"""TimeToTarget: the speedrun's clock, driven by a real lightning.Trainer."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from models import create_model
from training.callbacks import StopAtStep, TimeToTarget
from training.module import ImageClassifier


def fit(target: float, *callbacks: L.Callback) -> tuple[L.Trainer, TimeToTarget]:
    torch.manual_seed(0)
    module = ImageClassifier(create_model("lenet5", num_classes=10, in_channels=3),
                             optimizer=functools.partial(torch.optim.SGD, lr=0.01), num_classes=10)
    data = TensorDataset(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,)))
    clock = TimeToTarget(monitor="val/acc", target=target)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock, *callbacks])
    trainer.fit(module, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    return trainer, clock


def test_the_time_to_a_reached_target_is_in_the_callback_metrics():
    trainer, clock = fit(target=0.0)  # reached at the first validation
    assert clock.seconds is not None and clock.seconds > 0
    assert float(trainer.callback_metrics["time_to_target_s"]) == pytest.approx(clock.seconds)


def test_a_target_reached_by_the_validation_of_a_fit_stopped_mid_epoch_is_in_the_callback_metrics():
    trainer, clock = fit(0.0, StopAtStep(2))  # 4 batches an epoch: stopped inside the first, validated at the stop
    assert trainer.global_step == 2 and clock.seconds is not None
    assert float(trainer.callback_metrics["time_to_target_s"]) == pytest.approx(clock.seconds)


def test_a_target_never_reached_leaves_no_time():
    trainer, clock = fit(target=1.01)
    assert clock.seconds is None and "time_to_target_s" not in trainer.callback_metrics
