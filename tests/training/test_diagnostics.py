"""Each diagnostic callback writes to TensorBoard what it promises, read back from the event files.

Short fits of small networks on scikit-learn's digits (1 channel, 32x32, 10 classes).
"""

from __future__ import annotations

import functools
import io

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch import nn

from datamodules.digits import DigitsDataModule
from helpers import ROOT
from training import diagnostics as dg
from training.module import ImageClassifier

VAL_IMAGES = 144  # DigitsDataModule's validation split


@pytest.fixture(scope="module")
def digits():
    data = DigitsDataModule(data_dir="unused", batch_size=32, seed=0)
    data.setup()
    return data


def small_cnn(activation=nn.ReLU) -> nn.Sequential:
    """conv (8 channels) -> act -> pool -> linear 32 -> act -> linear 32 -> act -> linear 10."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), activation(), nn.MaxPool2d(4), nn.Flatten(),
        nn.Linear(8 * 8 * 8, 32), activation(), nn.Linear(32, 32), activation(), nn.Linear(32, 10),
    )


def fit(tmp_path, data, net, callbacks, optimizer=None, logger=True, **trainer_args) -> L.Trainer:
    L.seed_everything(0, verbose=False)
    module = ImageClassifier(net, optimizer=optimizer or functools.partial(torch.optim.Adam, lr=3e-3), num_classes=10)
    args = dict(max_epochs=1, limit_train_batches=4, num_sanity_val_steps=2, accelerator="cpu", devices=1,
                enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    args.update(trainer_args)
    trainer = L.Trainer(
        logger=TensorBoardLogger(str(tmp_path), name="", version="") if logger else False,
        callbacks=callbacks, default_root_dir=str(tmp_path), **args,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def events(tmp_path) -> EventAccumulator:
    accumulator = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0,
                                                                 "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator, tag: str) -> dict[int, float]:
    return {event.step: event.value for event in accumulator.Scalars(tag)}


# 1. learning curves --------------------------------------------------------------
def test_train_and_val_share_a_chart_and_the_gap_is_train_minus_val_accuracy(tmp_path, digits):
    fit(tmp_path, digits, small_cnn(), [dg.LearningCurves()], max_epochs=2)
    logged = events(tmp_path)
    layout = layout_pb2.Layout.FromString(logged.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert ["train/loss", "val/loss"] in charts.values() and ["train/acc", "val/acc"] in charts.values()
    gap, train_acc, val_acc = (scalars(logged, t) for t in ("watch/generalization_gap", "train/acc", "val/acc"))
    assert len(gap) == 2 and gap.keys() == train_acc.keys()
    for step, value in gap.items():  # the same epoch's two accuracies, not the previous validation's
        assert value == pytest.approx(train_acc[step] - val_acc[step], abs=1e-6)
    assert len(set(val_acc.values())) == 2  # two different validations, so a stale one would show


def test_no_gap_on_an_epoch_without_validation(tmp_path, digits):
    fit(tmp_path, digits, small_cnn(), [dg.LearningCurves()], max_epochs=3, limit_train_batches=2,
        check_val_every_n_epoch=2)
    logged = events(tmp_path)
    gap, train_acc, val_acc = (scalars(logged, t) for t in ("watch/generalization_gap", "train/acc", "val/acc"))
    assert len(train_acc) == 3 and len(val_acc) == 1 and len(gap) == 1
    (step, value), = gap.items()
    assert value == pytest.approx(train_acc[step] - val_acc[step], abs=1e-6)


# 2. gradient norms -----------------------------------------------------------------
class GradientRecorder(L.Callback):
    """The first layer's weight-gradient norm at each step, straight from the parameter."""

    def __init__(self) -> None:
        self.norms: dict[int, float] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.norms.setdefault(trainer.global_step, pl_module.net[0].weight.grad.norm().item())


def test_gradient_norms_are_the_weight_gradients_of_every_layer_every_n_steps(tmp_path, digits):
    recorder = GradientRecorder()
    fit(tmp_path, digits, small_cnn(), [dg.GradientNorms(every_n_steps=2), recorder], limit_train_batches=5)
    logged = events(tmp_path)
    tags = sorted(t for t in logged.Tags()["scalars"] if t.startswith("watch/grad_norm_log10/"))
    # convs and linears, input first
    assert tags == [f"watch/grad_norm_log10/{layer}" for layer in ("0_0", "1_4", "2_6", "3_8")]
    first = scalars(logged, "watch/grad_norm_log10/0_0")
    assert sorted(first) == [0, 2, 4]
    for step, value in first.items():  # log10 of the norm: orders of magnitude apart stay readable on one axis
        assert 10 ** value == pytest.approx(recorder.norms[step], rel=1e-5)


def test_gradient_norms_with_lbfgs_log_once_per_step(tmp_path, digits):
    lbfgs = functools.partial(torch.optim.LBFGS, lr=0.1, max_iter=4)  # up to 4 closure calls per step
    recorder = GradientRecorder()
    fit(tmp_path, digits, small_cnn(), [dg.GradientNorms(every_n_steps=1), recorder], optimizer=lbfgs,
        limit_train_batches=3)
    steps = [event.step for event in events(tmp_path).Scalars("watch/grad_norm_log10/0_0")]
    assert steps == [0, 1, 2]
    assert 10 ** scalars(events(tmp_path), "watch/grad_norm_log10/0_0")[1] == pytest.approx(recorder.norms[1], rel=1e-5)


# 3. dead units -----------------------------------------------------------------------
def validate(tmp_path, net, callbacks, **validate_args) -> None:
    trainer = L.Trainer(logger=TensorBoardLogger(str(tmp_path), name="", version=""), callbacks=callbacks,
                        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(ImageClassifier(net, num_classes=10), verbose=False, **validate_args)


def test_dead_relu_fraction_is_one_for_a_killed_layer_and_zero_for_a_fresh_one(tmp_path, digits):
    net = small_cnn()
    with torch.no_grad():
        net[0].bias[:4] = -1e4  # half the conv channels: negative everywhere, on every image
        net[6].bias[:] = -1e4  # the second hidden linear layer: all dead
    callback = dg.DeadUnits()
    fit(tmp_path / "killed", digits, net, [callback], limit_train_batches=2,
        optimizer=functools.partial(torch.optim.SGD, lr=1e-3))
    logged = events(tmp_path / "killed")
    dead = {tag: scalars(logged, tag) for tag in logged.Tags()["scalars"] if tag.startswith("watch/dead_units/")}
    assert sorted(dead) == ["watch/dead_units/0_1", "watch/dead_units/1_5", "watch/dead_units/2_7"]
    assert all(len(points) == 1 for points in dead.values())  # one validation epoch; the sanity check is skipped
    # channels, not positions: 4 of 8 (the others fresh, alive)
    assert list(dead["watch/dead_units/0_1"].values()) == [0.5]
    assert list(dead["watch/dead_units/2_7"].values()) == [1.0]
    assert callback.fractions["2_7"] == 1.0

    fresh = dg.DeadUnits()
    validate(tmp_path / "fresh", small_cnn(), [fresh], datamodule=digits)
    assert fresh.fractions["0_1"] == 0.0
    assert scalars(events(tmp_path / "fresh"), "watch/dead_units/0_1") == {0: 0.0}


def test_a_unit_that_fires_on_one_example_of_the_last_batch_is_alive(tmp_path):
    """Dead means zero on the whole validation set, not on one batch."""
    x = torch.tensor([[0.0, 1.0, -1.0, 0.0], [-1.0, -2.0, -1.0, 0.0], [-3.0, -1.0, 0.0, -1.0], [2.0, -1.0, -1.0, 0.0]])
    net = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(4, 10))  # the ReLU's units are the input's 4 features
    callback = dg.DeadUnits()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(4, dtype=torch.long)),
                                         batch_size=2)
    validate(tmp_path, net, [callback], dataloaders=loader)
    assert callback.fractions == {"0_1": 0.5}  # unit 0 fires only on the last example, unit 1 only on the first
    assert scalars(events(tmp_path), "watch/dead_units/0_1") == {0: 0.5}


# 4. histograms -------------------------------------------------------------------------
def test_weight_and_activation_histograms_every_n_epochs_and_at_the_last(tmp_path, digits):
    net = small_cnn(activation=nn.Sigmoid)
    fit(tmp_path, digits, net, [dg.Histograms(every_n_epochs=2, max_values=2000)], max_epochs=4, limit_train_batches=1)
    logged = events(tmp_path)
    tags = logged.Tags()["histograms"]
    assert (sorted(t for t in tags if t.startswith("xray/weights/"))
            == [f"xray/weights/{i}" for i in ("0_0", "1_4", "2_6", "3_8")])
    assert (sorted(t for t in tags if t.startswith("xray/activations/"))
            == [f"xray/activations/{i}" for i in ("0_1", "1_5", "2_7")])
    steps = [event.step for event in logged.Histograms("xray/activations/0_1")]
    # epochs 1, 3 and 4 (the last)
    assert steps == [event.step for event in logged.Histograms("xray/weights/0_0")] == [1, 3, 4]
    first_conv = logged.Histograms("xray/activations/0_1")[0].histogram_value  # 32 images x 8 x 32 x 32, subsampled
    assert first_conv.num == 2000 and 0.0 <= first_conv.min and first_conv.max <= 1.0  # a sigmoid's range
    last = logged.Histograms("xray/activations/2_7")[0].histogram_value  # 32 images x 32 units
    assert last.num == 32 * 32
    weights = logged.Histograms("xray/weights/3_8")[-1].histogram_value
    assert weights.num == 32 * 10
    assert weights.max == pytest.approx(net[8].weight.max().item(), abs=1e-6)  # the final weights, last epoch


# 5. augmented images -----------------------------------------------------------------
def test_unnormalize_inverts_the_data_modules_normalization():
    raw = torch.rand(2, 3, 4, 4)
    shift, scale = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    normalized = (raw - torch.tensor(shift).view(1, 3, 1, 1)) / torch.tensor(scale).view(1, 3, 1, 1)
    assert torch.allclose(dg.unnormalize(normalized, shift, scale), raw, atol=1e-6)


def test_image_grid_places_images_row_by_row():
    images = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2) / 2  # values 0, 0.5, 1
    grid = dg.image_grid(images, per_row=2, pad=1)
    assert grid.shape == (1, 1 + 2 * 3, 1 + 2 * 3)
    assert grid[0, 1, 1] == 0.0 and grid[0, 1, 4] == 0.5 and grid[0, 4, 1] == 1.0 and grid[0, 4, 4] == 1.0  # gap fill


class FirstBatch(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not hasattr(self, "images"):
            self.images = batch[0].clone()


def test_augmented_images_show_the_first_training_batch_once_unnormalized(tmp_path, digits):
    first = FirstBatch()
    fit(tmp_path, digits, small_cnn(), [dg.AugmentedImages(max_images=10, per_row=4), first], max_epochs=2,
        limit_train_batches=2)
    images = events(tmp_path).Images("xray/augmented_images")
    assert len(images) == 1 and images[0].step == 0
    picture = np.asarray(Image.open(io.BytesIO(images[0].encoded_image_string)).convert("L"), dtype=np.float32)
    assert picture.shape == (2 + 3 * 34, 2 + 4 * 34)  # 10 images of 32x32, 4 to a row, 2-pixel gaps
    expected = dg.unnormalize(first.images[:10], digits.shift, digits.scale) * 255  # digits: strokes ~1 on 0
    assert expected.min() < 10 and expected.max() > 245
    assert np.abs(picture[2:34, 2:34] - expected[0, 0].numpy()).max() <= 1.0
    assert np.abs(picture[36:68, 2 + 34:34 + 34] - expected[5, 0].numpy()).max() <= 1.0  # second row, second column


# 6. confusion matrix ---------------------------------------------------------------------
def test_confusion_matrix_of_each_validation_epoch(tmp_path, digits):
    callback = dg.ValConfusionMatrix()
    fit(tmp_path, digits, small_cnn(), [callback], max_epochs=2, limit_train_batches=3)
    logged = events(tmp_path)
    assert len(logged.Images("xray/confusion_matrix")) == 2  # both epochs, not the sanity check
    counts = torch.tensor(callback.counts)
    assert counts.shape == (10, 10) and counts.sum() == VAL_IMAGES  # the whole validation set, counted once
    assert counts.sum(1).tolist() == torch.bincount(torch.tensor([y for _, y in digits.val_set]), minlength=10).tolist()
    assert counts.trace().item() / VAL_IMAGES == pytest.approx(list(scalars(logged, "val/acc").values())[-1], abs=1e-6)


# without TensorBoard, configs, bad values ------------------------------------------------------
def all_diagnostics() -> list[L.Callback]:
    return [dg.LearningCurves(), dg.GradientNorms(every_n_steps=1), dg.DeadUnits(), dg.Histograms(every_n_epochs=1),
            dg.AugmentedImages(), dg.ValConfusionMatrix()]


def test_without_a_tensorboard_logger_nothing_is_written_and_training_runs(tmp_path, digits):
    fit(tmp_path, digits, small_cnn(), all_diagnostics(), logger=False, limit_train_batches=2)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_each_diagnostic_is_a_named_node_of_the_diagnostics_config():
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["callbacks=[diagnostics,early_stopping]", "callbacks.grad_norms=null",
                                          "callbacks.histograms.every_n_epochs=3", "trainer.log_every_n_steps=7"])
        default = compose("train", overrides=["callbacks=diagnostics"])
    names = {"learning_curves", "grad_norms", "dead_units", "histograms", "augmented_images", "confusion_matrix"}
    assert names | {"model_checkpoint", "lr_monitor"} <= set(default.callbacks)
    assert cfg.callbacks.grad_norms is None and "early_stopping" in cfg.callbacks
    built = {name: instantiate(cfg.callbacks[name]) for name in names - {"grad_norms"}}
    assert built["histograms"].every_n_epochs == 3
    assert instantiate(default.callbacks.grad_norms).every_n_steps == default.trainer.log_every_n_steps


@pytest.mark.parametrize("build", [lambda: dg.GradientNorms(every_n_steps=0), lambda: dg.Histograms(every_n_epochs=-1),
                                   lambda: dg.AugmentedImages(max_images=0)])
def test_bad_periods_are_refused_with_the_key_named(build):
    with pytest.raises(ValueError, match=r"callbacks\.\w+\.\w+ must be a positive integer"):
        build()
