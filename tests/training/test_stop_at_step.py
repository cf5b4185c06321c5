"""trainer.max_steps: a config's step limit stops at that step, validates the weights it stops with, and
sizes a per-step schedule; it is ours (StopAtStep), not Lightning's (whose resume replays an epoch end)."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from cli.commandline import instantiate_trainer
from core.errors import UserError
from models import create_model
from training.callbacks import StopAtStep, steps_planned
from training.module import ImageClassifier


class Seen(L.Callback):
    def __init__(self) -> None:
        self.validated_at, self.schedule_length = [], None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated_at.append(trainer.global_step)

    def on_train_start(self, trainer, pl_module) -> None:
        self.schedule_length = steps_planned(trainer)


def test_max_steps_stops_mid_epoch_validates_the_final_weights_and_sizes_the_schedule():
    torch.manual_seed(0)
    module = ImageClassifier(create_model("lenet5", num_classes=10, in_channels=3), num_classes=10,
                             optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    # 5 steps/epoch
    data = DataLoader(TensorDataset(torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,))), batch_size=8)
    seen = Seen()
    node = OmegaConf.create({"_target_": "lightning.Trainer", "accelerator": "cpu", "max_epochs": 4, "max_steps": 7,
                             "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                             "enable_model_summary": False, "num_sanity_val_steps": 0})
    trainer = instantiate_trainer(node, callbacks=[seen])
    assert trainer.max_steps == -1 and any(isinstance(c, StopAtStep) for c in trainer.callbacks)  # never Lightning's
    trainer.fit(module, train_dataloaders=data, val_dataloaders=data)
    assert trainer.global_step == 7  # inside the second epoch of five steps
    assert seen.validated_at == [5, 7]  # each epoch end, and the weights it stopped with
    assert seen.schedule_length == 7  # not 4 epochs x 5 steps


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_a_bad_max_steps_names_the_key(bad):
    with pytest.raises(UserError, match=r"trainer\.max_steps must be an integer >= 1"):
        StopAtStep(bad)
