"""training.callbacks.Checkpoint: epochs counted from 1 in file names, one file when best and last are the same."""

from __future__ import annotations

import os

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from helpers import ROOT
from training.callbacks import Checkpoint
from training.checkpoints import RunCheckpointIO


class Scored(L.LightningModule):
    """Logs val/acc from a fixed list, one value per epoch."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.layer, self.scores = torch.nn.Linear(2, 2), scores

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", self.scores[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(folder, scores: list[float], resume: str | None = None, run_io: bool = True) -> L.Trainer:
    """A fit with the default config's two checkpoint nodes (best by val/acc, and last.ckpt) and, with
    ``run_io``, train.py's checkpoint IO (else Lightning's own)."""
    nodes = OmegaConf.load(ROOT / "configs" / "callbacks" / "default.yaml")
    nodes.model_checkpoint.dirpath = nodes.last_checkpoint.dirpath = str(folder)
    callbacks = [instantiate(nodes.model_checkpoint), instantiate(nodes.last_checkpoint)]
    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = L.Trainer(max_epochs=len(scores), accelerator="cpu", logger=False, callbacks=callbacks,
                        enable_progress_bar=False, enable_model_summary=False,
                        plugins=[RunCheckpointIO.of(callbacks)] if run_io else None)
    trainer.fit(Scored(scores), data, data, ckpt_path=resume, weights_only=True)
    return trainer


def test_the_best_file_is_named_by_its_epoch_counted_from_1(tmp_path):
    fit(tmp_path, [0.5, 0.7, 0.6])  # the second epoch is the best
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch002-val_acc0.7000.ckpt", "last.ckpt"]
    assert os.stat(tmp_path / "last.ckpt").st_nlink == 1  # different steps: two files


def test_a_best_checkpoint_that_is_also_the_last_is_one_file_and_a_resume_leaves_it_alone(tmp_path):
    fit(tmp_path, [0.5, 0.6])  # the last epoch is the best: the same weights under two names
    best, last = tmp_path / "epoch002-val_acc0.6000.ckpt", tmp_path / "last.ckpt"
    assert os.path.samefile(best, last) and os.stat(last).st_nlink == 2
    kept = best.read_bytes()
    weights = torch.load(best, weights_only=True)["state_dict"]
    fit(tmp_path, [0.5, 0.6, 0.4], resume=str(last))  # a third, worse epoch: last.ckpt changes, the best must not
    assert sorted(p.name for p in tmp_path.iterdir()) == [best.name, last.name]
    assert best.read_bytes() == kept and not os.path.samefile(best, last)
    assert torch.load(last, weights_only=True)["epoch"] == 2  # the third epoch's (Lightning counts from 0 inside)
    assert all(torch.equal(torch.load(best, weights_only=True)["state_dict"][k], v) for k, v in weights.items())


def test_with_lightnings_own_checkpoint_io_both_copies_stay(tmp_path):
    # Lightning's IO may write into an existing file (its temporary file on another file system): a link would
    # let a resumed run's last.ckpt change the best file too
    fit(tmp_path, [0.5, 0.6], run_io=False)
    best, last = tmp_path / "epoch002-val_acc0.6000.ckpt", tmp_path / "last.ckpt"
    assert best.is_file() and last.is_file() and not os.path.samefile(best, last)


def test_the_state_key_is_model_checkpoints_so_older_runs_resume_with_their_best():
    from lightning.pytorch.callbacks import ModelCheckpoint

    for settings in ({"monitor": "val/acc", "mode": "max"}, {"monitor": None, "every_n_train_steps": 5}):
        assert Checkpoint(**settings).state_key == ModelCheckpoint(**settings).state_key
