"""The epoch line after a resume from a checkpoint taken inside an epoch (``callbacks.last_checkpoint.
every_n_train_steps``): Lightning then continues that epoch without calling ``on_train_epoch_start``,
so the line's counters must already exist (they start with the fit)."""

from __future__ import annotations

import functools
import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from models import create_model
from training.module import ImageClassifier
from training.progress import EpochLog


def fit(tmp_path, epochs: int, callbacks: list, ckpt_path=None) -> None:
    torch.manual_seed(0)
    module = ImageClassifier(create_model("lenet5", num_classes=10, in_channels=3), num_classes=10,
                             optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    # 5 steps/epoch
    data = DataLoader(TensorDataset(torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,))), batch_size=8)
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
                        callbacks=callbacks)
    trainer.fit(module, train_dataloaders=data, val_dataloaders=data, ckpt_path=ckpt_path, weights_only=True)


def test_a_resume_from_inside_an_epoch_writes_that_epochs_line(tmp_path, caplog):
    every_3 = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1, filename="{step}")
    fit(tmp_path, 1, [every_3])
    inside = tmp_path / "ckpt" / "step=3.ckpt"  # step 3 of the first epoch's 5
    assert inside.is_file()
    with caplog.at_level(logging.INFO, logger="train"):
        fit(tmp_path, 2, [EpochLog()], ckpt_path=inside)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"], lines
    assert "img/s" in lines[0]
