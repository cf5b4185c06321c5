"""TensorBoard's first screens, read back from the event files as TensorBoard 2.21 orders them
(tests/tensorboard_view.py): loss and accuracy first, gradient norms on a log scale, and an HPARAMS tab
whose ticked columns are what the runs in view vary, with trial ids that tell the rows apart."""

from __future__ import annotations

import contextlib
import math
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2

from helpers import SWEEP_TINY
from inprocess import run_entry_output
from tensorboard_view import TICKED, hparams_experiment, scalars_tab_tags, session_starts, time_series_groups


@pytest.fixture(scope="module")
def logdir(seed_sweep_runs, tmp_path_factory):
    """What `tensorboard --logdir <it>` shows: a sweep (two optimizers x two seeds, LeNet-5; the session's) under
    multirun/, and a ResNet-20 run with every diagnostic under outputs/ (trained in this process)."""
    root = tmp_path_factory.mktemp("logdir")
    shutil.copytree(seed_sweep_runs[0], root / "multirun" / "sweep", symlinks=True)
    with contextlib.chdir(root):  # the run dir Hydra names, under ./outputs
        code, _, err = run_entry_output("train.py", [*SWEEP_TINY, "model=resnet20", "callbacks=diagnostics"])
    assert code == 0, err[-3000:]
    (run,) = (root / "outputs").iterdir()
    return root, run


def test_time_series_and_scalars_open_on_loss_and_accuracy(logdir):
    """Time Series (the tab TensorBoard opens on) showed 30 activation histograms first and the one-point
    test charts before train and val; the Scalars tab started with test too."""
    _, run = logdir
    groups = time_series_groups(run)
    names = [name for name, _ in groups]
    assert groups[:2] == [("train", ["train/acc", "train/loss"]), ("val", ["val/acc", "val/acc_best", "val/loss"])]
    assert names == ["train", "val", "watch", "x_test", "xray"]  # then what to watch, the test numbers, the pictures
    tags = dict(groups)
    # and watch/loss_step, every 10 steps (none here)
    assert "x_test/acc" in tags["x_test"] and "watch/lr" in tags["watch"]
    pictures = [t for t in tags["xray"] if t.startswith(("xray/activations/", "xray/weights/", "xray/grad_cam"))]
    assert pictures and all(not t.startswith("xray") for name in names[:-1] for t in tags[name])
    scalars = scalars_tab_tags(run)
    assert scalars[:5] == ["train/acc", "train/loss", "val/acc", "val/acc_best", "val/loss"]
    assert scalars.index("x_test/acc") > scalars.index("val/loss")


def test_gradient_norms_are_on_a_log_scale_and_charted_together(logdir):
    """A linear axis hid the orders of magnitude between layers that the chart exists to show."""
    _, run = logdir
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    norms = [t for t in events.Tags()["scalars"] if t.startswith("watch/grad_norm_log10/")]
    # ResNet-20: 19 convs, 1 linear
    assert len(norms) == 20 and not any(t.startswith("watch/gradients/") for t in events.Tags()["scalars"])
    values = [e.value for tag in norms for e in events.Scalars(tag)]
    assert all(-12 < v < 3 for v in values) and min(values) < 0  # log10 of norms between 1e-12 and 1e3
    layout = layout_pb2.Layout.FromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts["log10 of the weight-gradient norm per layer"] == ["watch/grad_norm_log10/.*"]


def test_hparams_ticks_every_column_the_runs_vary_and_tells_the_rows_apart(logdir):
    """TensorBoard ticks the first five columns, those that differ first by name: parameters and MACs took
    two of them (they follow the model), so seed was left unticked; booleans were numbers; every trial id
    started with the date."""
    root, run = logdir
    hparams, metrics = hparams_experiment(root)
    differ = [info.name for info in hparams if info.differs]
    assert set(differ) == {"model", "model.batchnorm", "optimizer", "optimizer.lr", "seed"}
    assert set(differ) <= {info.name for info in hparams[:TICKED]}
    types = {info.name: info.type for info in hparams}
    assert types["model.batchnorm"] == api_pb2.DATA_TYPE_BOOL and types["optimizer.lr"] == api_pb2.DATA_TYPE_FLOAT64
    assert [m.name.tag for m in metrics[:TICKED]] == ["train/acc", "train/loss", "val/acc", "val/acc_best", "val/loss"]
    assert "x_test/acc" in [m.name.tag for m in metrics]
    trials = {folder.name: start.group_name for folder, start in session_starts(root).items()}
    assert trials == {**{f"optimizer={o},seed={s}": f"optimizer={o},seed={s}_sweep" for o in ("sgd", "adam")
                         for s in (1, 2)},
                      run.name: run.name}
    assert run.name.startswith("resnet20_digits_2")  # what the run is first, the time last
    (one,) = [start for folder, start in session_starts(root).items() if folder == run]
    assert one.hparams["model.batchnorm"].WhichOneof("kind") == "bool_value"
    assert math.isclose(one.hparams["optimizer.lr"].number_value, 1e-3)
