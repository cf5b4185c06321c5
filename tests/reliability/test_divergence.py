"""A run whose loss blows up stops at once with one line naming the step and
the likely cause, and leaves only finite weights behind."""

from __future__ import annotations

import json
import math
import re

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inprocess import run_entry
from training.callbacks import DivergenceError, DivergenceGuard


def test_a_diverging_run_stops_with_one_line_and_a_finite_last_checkpoint(tmp_path, capsys):
    # plain SGD at lr=1e6: the first epoch (2 steps) still has finite losses and writes last.ckpt,
    # the second epoch's first loss is NaN (in this process; a sweep's diverging run, in its own process, is
    # test_sweeps.py::test_a_failed_run_does_not_stop_the_sweep_and_compare_marks_it)
    run_dir = tmp_path / "run"
    code, stderr = run_entry("train.py", ["experiment=smoke", "optimizer=sgd", "scheduler=none", "optimizer.lr=1e6",
                                          "trainer.max_epochs=3", "trainer.limit_train_batches=2",
                                          "trainer.enable_progress_bar=false", "test=false",
                                          f"hydra.run.dir={run_dir}"], capsys, stage="run")
    assert code == 1, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    match = re.search(r"training diverged: loss is (nan|inf|-inf) in epoch 2, batch 1 \(after (\d+) "
                      r"optimizer steps\)", errors[0])
    assert match, errors[0]
    assert "learning rate (1e+06) is likely too high" in errors[0]
    assert "optimizer.lr" in errors[0]  # what to change

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] <= int(match.group(2))  # written before the diverging step
    for key, tensor in checkpoint["state_dict"].items():
        assert torch.isfinite(tensor).all(), key
    assert "checkpoints/" in errors[0] and "holds the last weights saved before it" in errors[0]  # what exists
    written = json.loads((run_dir / "metrics.json").read_text())  # a single run records its divergence too
    assert written["status"] == "diverged" and "training diverged" in written["error"]


def test_a_run_diverging_before_any_checkpoint_says_there_is_none():
    with pytest.raises(DivergenceError) as error:
        fit(NaNAt(nan_step=0), [DivergenceGuard()])
    assert "no checkpoint was saved before it" in str(error.value) and "last weights" not in str(error.value)


class NaNAt(L.LightningModule):
    """A linear model whose loss turns NaN at one step."""

    def __init__(self, nan_step: int) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)
        self.nan_step = nan_step
        self.before_nan: dict[str, torch.Tensor] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.layer(x), y)
        if self.global_step == self.nan_step:
            self.before_nan = {k: v.detach().clone() for k, v in self.state_dict().items()}
            loss = loss * float("nan")
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(module: NaNAt, callbacks: list) -> None:
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,))), batch_size=4)
    saves = any(isinstance(c, L.pytorch.callbacks.ModelCheckpoint) for c in callbacks)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=saves,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, data)


def test_the_guard_stops_before_the_nan_reaches_the_weights():
    module = NaNAt(nan_step=3)
    with pytest.raises(DivergenceError, match=r"loss is nan in epoch 1, batch 4 \(after 3 optimizer "
                                              r"steps\).*learning rate \(0\.1\)"):
        fit(module, [DivergenceGuard()])
    assert module.before_nan, "the NaN step was never reached"
    for key, tensor in module.state_dict().items():
        assert torch.isfinite(tensor).all(), key
        assert torch.equal(tensor, module.before_nan[key]), key  # no optimizer step on the NaN loss


def test_without_the_guard_the_nan_step_corrupts_the_weights():
    # the control: what the guard prevents
    module = NaNAt(nan_step=3)
    fit(module, [])
    assert not all(math.isfinite(v) for v in module.layer.weight.flatten().tolist())


def test_on_a_gpu_the_guard_reads_the_device_every_n_steps_and_still_names_the_first_bad_step(tmp_path):
    # every_n_steps=5 is what a GPU run gets (a read per step would stall its queue): the NaN at step 3 is
    # recorded on the device and read at step 4 (the fifth loss); the message names step 3, not step 4
    module = NaNAt(nan_step=3)
    with pytest.raises(DivergenceError, match=r"loss is nan in epoch 1, batch 4 \(after 3 optimizer steps\)"):
        fit(module, [DivergenceGuard(every_n_steps=5)])
    assert module.global_step == 4  # the read came after the optimizer had stepped on the NaN loss...


def test_on_a_gpu_no_checkpoint_is_written_after_the_first_non_finite_loss(tmp_path):
    # ...but no checkpoint is written after it: a save is preceded by a read, even between reads
    from lightning.pytorch.callbacks import ModelCheckpoint

    every_step = ModelCheckpoint(dirpath=tmp_path, filename="step{step}", every_n_train_steps=1, save_top_k=-1,
                                  auto_insert_metric_name=False)
    with pytest.raises(DivergenceError, match=r"loss is nan in epoch 1, batch \d+ \(after 3 optimizer steps\)"):
        fit(NaNAt(nan_step=3), [DivergenceGuard(every_n_steps=50), every_step])
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["step1.ckpt", "step2.ckpt", "step3.ckpt"]
    for path in tmp_path.glob("*.ckpt"):  # step3.ckpt: the weights after 3 steps, before the NaN loss of step 3
        for key, tensor in torch.load(path, weights_only=True)["state_dict"].items():
            assert torch.isfinite(tensor).all(), (path.name, key)


def test_a_run_that_ends_between_reads_is_still_checked():
    with pytest.raises(DivergenceError, match=r"\(after 7 optimizer steps\)"):
        fit(NaNAt(nan_step=7), [DivergenceGuard(every_n_steps=50)])  # 8 steps, one epoch: read at its end


def test_every_n_steps_must_be_a_positive_integer():
    from core.errors import UserError

    for bad in (0, -1, 2.5, True):
        with pytest.raises(UserError, match="every_n_steps must be null or a positive integer"):
            DivergenceGuard(every_n_steps=bad)
