"""The diagnostics as a user runs them: train.py callbacks=diagnostics, read back from TensorBoard.

The textbook effect: in a deep plain network (VGG-11 without batchnorm, 8 convolutions
and 3 linear layers), sigmoid starves the first layer of gradient, ReLU does not
(Glorot & Bengio 2010).
"""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import run_script

SHORT_VGG = ("data=digits", "model=vgg11", "model.batchnorm=false", "trainer=cpu", "trainer.max_epochs=1",
             "data.batch_size=32", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
             "trainer.enable_progress_bar=false", "test=false", "callbacks=diagnostics",
             "callbacks.grad_norms.every_n_steps=1")
# VGG-11: 8 convs, then 3 linear layers
FIRST, LAST = "watch/grad_norm_log10/00_features.0", "watch/grad_norm_log10/10_classifier.6"


def read(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    events.Reload()
    return events


@pytest.fixture(scope="module")
def vgg_runs(tmp_path_factory):
    """Two short runs of VGG-11 without batchnorm: relu with every diagnostic, sigmoid with three switched off."""
    runs = {}
    for activation, extra in (("relu", ()), ("sigmoid", ("callbacks.histograms=null", "callbacks.confusion_matrix=null",
                                                         "callbacks.margins=null"))):
        run_dir = tmp_path_factory.mktemp(activation)
        result = run_script("train.py", *SHORT_VGG, f"activation={activation}", *extra, f"hydra.run.dir={run_dir}")
        assert result.returncode == 0, result.stderr[-3000:]
        runs[activation] = run_dir
    return runs


# slow: two VGG-11 runs, about 22 s; default: each diagnostic's callback (training/test_diagnostics.py)
@pytest.mark.slow
def test_sigmoid_gives_the_first_layer_far_smaller_gradients_than_relu(vgg_runs):
    relu, sigmoid = read(vgg_runs["relu"]), read(vgg_runs["sigmoid"])
    relu_first = [10 ** e.value for e in relu.Scalars(FIRST)]  # logged as log10
    sigmoid_first = [10 ** e.value for e in sigmoid.Scalars(FIRST)]
    assert len(relu_first) == len(sigmoid_first) == 3  # every step of the 3
    assert max(sigmoid_first) < min(relu_first) / 10
    # vanishing: with sigmoid the first layer gets far less than the last, with ReLU not
    sigmoid_last = [10 ** e.value for e in sigmoid.Scalars(LAST)]
    relu_last = [10 ** e.value for e in relu.Scalars(LAST)]
    assert max(first / last for first, last in zip(sigmoid_first, sigmoid_last)) < 1e-3
    assert min(first / last for first, last in zip(relu_first, relu_last)) > 1e-2


# slow: the same two VGG-11 runs; default: each diagnostic's callback and its switch (training/test_diagnostics.py)
@pytest.mark.slow
def test_every_diagnostic_is_written_and_each_switches_off(vgg_runs):
    relu, sigmoid = read(vgg_runs["relu"]), read(vgg_runs["sigmoid"])
    scalars = relu.Tags()["scalars"]
    assert sum(t.startswith("watch/grad_norm_log10/") for t in scalars) == 11  # every conv and linear layer of VGG-11
    assert sum(t.startswith("watch/dead_units/") for t in scalars) == 10  # every ReLU module
    assert "watch/generalization_gap" in scalars
    # TensorBoard sorts groups by name: loss and accuracy (train/, val/) before the diagnostics
    # (tests/test_tensorboard.py)
    assert sorted({t.split("/")[0] for t in scalars}) == ["train", "val", "watch"]
    assert {"xray/augmented_images", "xray/confusion_matrix"} <= set(relu.Tags()["images"])
    assert any(t.startswith("xray/activations/") for t in relu.Tags()["histograms"])
    assert any(t.startswith("xray/weights/") for t in relu.Tags()["histograms"])
    # switched off in the sigmoid run; and sigmoid has no ReLU to die
    assert "xray/confusion_matrix" not in sigmoid.Tags()["images"] and not sigmoid.Tags()["histograms"]
    assert "xray/augmented_images" in sigmoid.Tags()["images"]
    assert not any(t.startswith("watch/dead_units/") for t in sigmoid.Tags()["scalars"])
    metrics = json.loads((vgg_runs["relu"] / "metrics.json").read_text())
    assert metrics["watch/generalization_gap"] == pytest.approx(metrics["train/acc"] - metrics["val/acc"], abs=1e-6)


def test_a_bad_period_is_one_line_and_exit_status_2(tmp_path, capsys):
    from inprocess import run_entry

    code, err = run_entry("train.py", ["experiment=smoke", "callbacks=diagnostics",
                                       "callbacks.grad_norms.every_n_steps=0", f"hydra.run.dir={tmp_path}"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "callbacks.grad_norms.every_n_steps" in lines[0] and "0" in lines[0], err
