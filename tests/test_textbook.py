"""The README's "The textbook, measured": each row's switch changes the computation, and each
row's command, shortened (few steps, digits), writes the artifact the row names and shows
what the row says."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from analysis.introspection import count_parameters_and_macs, summarize
from helpers import run_script
from inprocess import run_entry
from models import create_model
from training.diagnostics import margins, sparsity
from training.features import (
    cam_grids,
    class_sample,
    feature_map_grids,
    filter_grid,
    first_conv,
    grad_cam,
    report_figures,
    stage_outputs,
)
from training.losses import OneHotMAE
from training.regularization import WeightPenalty

SHORT = ("trainer.enable_progress_bar=false", "data.batch_size=32")


def events(run_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def last(accumulator: EventAccumulator, tag: str) -> float:
    return accumulator.Scalars(tag)[-1].value


def run_of(sweep_dir, *parts: str):
    """The run dir of a sweep whose name holds every one of ``parts``."""
    found = [d for d in sweep_dir.iterdir() if d.is_dir() and all(p in d.name for p in parts)]
    assert len(found) == 1, (parts, [d.name for d in sweep_dir.iterdir()])
    return found[0]


# pooling against strided convolution ---------------------------------------------------
@pytest.mark.parametrize("name, channels", [("lenet5", 1), ("vgg11_bn", 3)])
def test_strided_convolution_replaces_pooling_with_the_same_parameters_and_fewer_macs(name, channels):
    pool = create_model(name, num_classes=10, in_channels=channels, stem="cifar")
    stride = create_model(name, num_classes=10, in_channels=channels, stem="cifar", downsample="stride")
    assert any(isinstance(m, nn.MaxPool2d) for m in pool.modules())
    assert not any(isinstance(m, nn.MaxPool2d) for m in stride.modules())
    (p_params, p_macs), (s_params, s_macs) = (count_parameters_and_macs(m, (channels, 32, 32)) for m in (pool, stride))
    assert p_params == s_params and s_macs < p_macs
    stride.load_state_dict(pool.state_dict())  # same weights: only the downsampling differs
    x = torch.randn(2, channels, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(pool.eval()(x), stride.eval()(x))
    shapes = [r.output_shape for r in summarize(stride, (channels, 32, 32))[0] if r.type == "Conv2d"]
    # the first conv strides: C1 32 -> 14 as C1 + S2; VGG-11 32 -> 16
    assert shapes[0][-1] == (14 if name == "lenet5" else 16)


def test_downsample_errors_are_one_line():
    with pytest.raises(ValueError, match=r"^downsample='avg' is not valid; valid: pool, stride$"):
        create_model("vgg11", downsample="avg")
    with pytest.raises(ValueError, match="paper form of LeNet-5 .* must be 'pool'"):
        create_model("lenet5_paper", downsample="stride")
    with pytest.raises(ValueError, match="has no option downsample"):
        create_model("resnet20", downsample="stride")


# the kernel SVM ------------------------------------------------------------------------
def test_random_fourier_features_approximate_the_rbf_kernel_and_stay_fixed():
    torch.manual_seed(0)
    svm = create_model("rff_svm", num_classes=10, in_channels=1, image_size=4, features=20_000, gamma=0.1)
    assert sum(p.numel() for p in svm.parameters()) == (20_000 + 1) * 10  # only the linear SVM learns
    x = torch.randn(6, 1, 4, 4)
    z = svm.features(x)
    kernel = torch.exp(-0.1 * torch.cdist(x.flatten(1), x.flatten(1)) ** 2)
    assert (z @ z.T - kernel).abs().max() < 0.05
    with pytest.raises(ValueError, match="rff_svm is linear: it has no activation"):
        create_model("rff_svm", activation="relu")


def test_soft_margin_c_is_the_inverse_of_the_l2_strength():
    assert WeightPenalty("l2", C=50.0).strength == pytest.approx(0.01)
    with pytest.raises(ValueError, match="kind must be 'l2'"):
        WeightPenalty("l1", C=1.0)
    with pytest.raises(ValueError, match="regularization.C must be a number > 0"):
        WeightPenalty("l2", C=0)


# losses ----------------------------------------------------------------------------------
def test_mae_is_the_mean_absolute_error_on_one_hot_targets_with_a_constant_gradient():
    scores = torch.tensor([[0.5, 3.0, -1.0], [0.9, 0.1, 0.2]], requires_grad=True)
    target = torch.tensor([1, 0])
    loss = OneHotMAE()(scores, target)
    assert loss.item() == pytest.approx((0.5 + 2.0 + 1.0 + 0.1 + 0.1 + 0.2) / 6)
    loss.backward()
    assert torch.allclose(scores.grad.abs(), torch.full_like(scores, 1 / 6))  # far or near: the same step


def test_margins_are_the_true_score_minus_the_best_other():
    logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]])
    assert margins(logits, torch.tensor([0, 0])).tolist() == [1.0, -3.0]


def test_sparsity_counts_weights_below_the_threshold_per_layer():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].weight[0].fill_(1e-4)
        net[2].weight.zero_()
    fractions = sparsity(net, 1e-3)
    assert fractions == {"0_0": 0.25, "1_2": 1.0, "all": (4 + 8) / 24}


# features and Grad-CAM ---------------------------------------------------------------
def test_the_filter_image_has_one_tile_per_first_layer_filter():
    for name, channels in (("lenet5", 1), ("vgg11", 3)):
        conv = first_conv(create_model(name, num_classes=10, in_channels=channels, stem="cifar"))
        grid = filter_grid(conv, tile=24, per_row=8)
        side = conv.kernel_size[0] * (24 // conv.kernel_size[0])
        rows, columns = math.ceil(conv.out_channels / 8), min(conv.out_channels, 8)
        assert grid.shape == (channels, 2 + rows * (side + 2), 2 + columns * (side + 2))


def test_feature_maps_go_stage_by_stage_from_fine_to_coarse():
    net = create_model("lenet5").eval()
    stages = stage_outputs(net, torch.randn(1, 1, 32, 32))
    assert [(name, out.shape[-1]) for name, out in stages] == [("features.2", 28), ("features.3", 14),
                                                              ("features.6", 10), ("features.7", 5)]
    grids = feature_map_grids(net, torch.randn(1, 1, 32, 32), channels=16)
    assert [g.shape[-1] for _, g in grids] == [2 + 6 * 34, 2 + 6 * 34, 2 + 8 * 34, 2 + 8 * 34]  # 6 or 16 maps, 32 px


def test_grad_cam_maps_have_the_input_size_are_non_negative_and_follow_the_class():
    torch.manual_seed(0)
    net = create_model("vgg11_bn", num_classes=10, in_channels=3, stem="cifar").train()
    x = torch.randn(3, 3, 32, 32)
    maps, logits = grad_cam(net, x)
    assert maps.shape == (3, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    assert net.training and all(p.grad is None for p in net.parameters())  # mode and gradients untouched
    other, _ = grad_cam(net, x, classes=(logits.argmax(1) + 1) % 10)
    assert not torch.allclose(maps, other)  # another class, another map
    grids = cam_grids(net, x, logits.argmax(1))
    assert set(grids) == {"correct"} and grids["correct"].shape == (3, 2 + 2 * 34, 2 + 3 * 34)


def test_the_pictures_sample_every_class_from_a_test_split_sorted_by_class():
    """An image folder lists its test split class by class: the first batch was 64 airplanes."""
    targets = torch.arange(10).repeat_interleave(30)  # 300 images, sorted by class
    loader = [(torch.rand(64, 3, 8, 8), targets[i:i + 64]) for i in range(0, 300, 64)]
    _, sampled = class_sample(loader, num_classes=10, per_class=3)
    assert sampled.tolist() == [c for c in range(10) for _ in range(3)]


def test_the_report_figures_are_titled_labelled_and_report_sized():
    """filters.png was 134x24 pixels and Grad-CAM 138x70, without a title, a class name or a prediction."""
    torch.manual_seed(0)
    net = create_model("vgg11_bn", num_classes=10, in_channels=3, stem="cifar").eval()
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    targets = torch.arange(10).repeat(2)
    figures = report_figures(net, torch.randn(20, 3, 32, 32), targets, classes=classes, model="vgg11_bn", count=8)
    assert set(figures) >= {"filters.png", "feature_maps.png"} and any(name.startswith("grad_cam_") for name in figures)
    for name, figure in figures.items():
        assert figure.get_figwidth() * figure.dpi >= 800, name
        assert figure._suptitle.get_text().startswith("vgg11_bn: "), name
    assert "64 filters of its first convolution" in figures["filters.png"]._suptitle.get_text()
    assert len([a for a in figures["filters.png"].axes if a.get_images()]) == 64
    for kind in ("correct", "misclassified"):
        if f"grad_cam_{kind}.png" in figures:
            labels = [a.get_title() for a in figures[f"grad_cam_{kind}.png"].axes if a.get_title()]
            assert 0 < len(labels) <= 8 and all("\n→ " in label for label in labels)  # true above predicted
            true = [label.split("\n→ ")[0] for label in labels]
            distinct = len(set(true))
            assert set(true) <= set(classes) and len(set(true[:distinct])) == distinct  # one class after another
            assert all((t == p) == (kind == "correct") for t, p in (label.split("\n→ ") for label in labels))
    rows = [a.get_ylabel() for a in figures["feature_maps.png"].axes if a.get_ylabel()]
    assert len(rows) == 5 and rows[0].startswith("features.") and "maps 32x32" in rows[0]  # VGG-11: 5 stages


# the commands, shortened ----------------------------------------------------------------
@pytest.fixture(scope="module")
def sparsity_runs(tmp_path_factory):
    """experiment=sparsity_ablation (with every diagnostic), 2 epochs, one seed: L1 and L2."""
    sweep_dir = tmp_path_factory.mktemp("sparsity")
    result = run_script("train.py", "-m", "experiment=sparsity_ablation", "seed=1", "trainer.max_epochs=2",
                        "callbacks.filters.every_n_epochs=1", *SHORT, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


# slow: two runs, about 12 s; default: the sparsity count itself
#   (test_sparsity_counts_weights_below_the_threshold_per_layer)
@pytest.mark.slow
def test_l1_makes_more_weights_zero_than_l2_after_the_same_steps(sparsity_runs):
    l1, l2 = events(run_of(sparsity_runs, "regularization=l1")), events(run_of(sparsity_runs, "regularization=l2"))
    assert last(l1, "watch/sparsity/all") > 2 * last(l2, "watch/sparsity/all")
    assert sum(t.startswith("watch/sparsity/") for t in l1.Tags()["scalars"]) == 6  # LeNet-5's 5 weight layers + all


# slow: the same two runs; default: each picture on a fixed network (the filter, feature-map and Grad-CAM tests
#   above)
@pytest.mark.slow
def test_diagnostics_draw_filters_feature_maps_grad_cam_means_and_margins(sparsity_runs):
    run = events(run_of(sparsity_runs, "regularization=l1"))
    images = set(run.Tags()["images"])
    maps = {f"xray/feature_maps/{name}" for name in ("input", "0_features.2", "3_features.7")}
    assert {"xray/filters", *maps} <= images
    assert images & {"xray/grad_cam_correct", "xray/grad_cam_misclassified"}
    filters = run.Images("xray/filters")
    assert len(filters) == 2 and filters[-1].width == 2 + 6 * 22  # one 20-pixel tile per C1 filter
    assert sum(t.startswith("watch/activation_mean/") for t in run.Tags()["scalars"]) == 4  # LeNet-5's 4 ReLUs
    assert 0 <= last(run, "watch/inside_margin") <= 1 and "xray/margins" in run.Tags()["histograms"]


# slow: the same two runs and an evaluate.py; default: the figures' sizes and labels
#   (test_the_report_figures_are_titled_labelled_and_report_sized)
@pytest.mark.slow
def test_evaluate_writes_the_pictures_as_png(sparsity_runs, tmp_path):
    from matplotlib.image import imread

    result = run_script("evaluate.py", f"ckpt_path='{run_of(sparsity_runs, 'regularization=l1')}'", "visualize=true",
                        "trainer=cpu", "logger=none", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("filters.png", "feature_maps.png", "grad_cam_correct.png"):  # at report size: 134x24 pixels before
        height, width = imread(tmp_path / name).shape[:2]
        assert width >= 800 and height >= 200, (name, width, height)


# slow: a textbook row's sweep, about 11 s; default: the textbook rows' pieces (above) and the batchnorm row (below)
@pytest.mark.slow
def test_sigmoid_outputs_are_not_zero_centred_and_tanh_outputs_are(tmp_path):
    result = run_script("train.py", "-m", "experiment=smoke", "activation=sigmoid,tanh", "callbacks=diagnostics",
                        "trainer.max_epochs=1", "trainer.limit_train_batches=5", "test=false", *SHORT,
                        f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    means = {a: [v for t, v in ((t, last(events(run_of(tmp_path, f"activation={a}")), t))
                               for t in events(run_of(tmp_path, f"activation={a}")).Tags()["scalars"])
                 if t.startswith("watch/activation_mean/")] for a in ("sigmoid", "tanh")}
    assert len(means["sigmoid"]) == len(means["tanh"]) == 4  # LeNet-5's four activations
    assert min(means["sigmoid"]) > 0.2 and max(abs(m) for m in means["tanh"]) < 0.2, means


# slow: a textbook row's sweep, about 10 s; default: the random features themselves
#   (test_random_fourier_features_approximate_the_rbf_kernel_and_stay_fixed)
@pytest.mark.slow
def test_the_kernel_svm_beats_the_linear_svm_on_digits(tmp_path):
    result = run_script("train.py", "-m", "experiment=kernel_svm", "regularization.C=10000", "seed=1",
                        "trainer.max_epochs=5", *SHORT, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    acc = {m: json.loads((run_of(tmp_path, f"model={m}") / "metrics.json").read_text())["test/acc"]
           for m in ("linear_svm", "rff_svm")}
    assert acc["rff_svm"] > acc["linear_svm"] + 0.01 and acc["rff_svm"] > 0.95, acc


# slow: two runs at lr 0.3, about 9 s; default: the batchnorm switch changes the network (models/test_registry.py)
@pytest.mark.slow
def test_batchnorm_trains_at_an_lr_where_the_plain_network_fails(tmp_path):
    # one epoch of the measured runs (seed 1, lr 0.3): with batchnorm 0.52 val acc, without 0.097
    result = run_script("train.py", "-m", "experiment=batchnorm_lr", "optimizer.lr=0.3", "seed=1", "test=false",
                        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={tmp_path}")
    acc = {bn: json.loads((run_of(tmp_path, f"model.batchnorm={bn}") / "metrics.json").read_text())
           for bn in ("True", "False")}
    assert acc["True"]["val/acc_best"] > 0.3, (acc, result.stderr[-2000:])  # chance: 0.1
    plain = acc["False"]
    assert plain.get("status") == "diverged" or plain["val/acc_best"] < 0.15, plain


def test_the_receptive_field_box_is_the_units_input_region():
    from core.figures import receptive_field_figure

    rows, _ = summarize(create_model("lenet5"), (1, 32, 32))
    row = next(r for r in rows if r.name == "features.6")  # C3 after its ReLU: 10x10 units, RF 14, jump 2
    _, unit, box = receptive_field_figure(torch.rand(1, 32, 32), row, "C3")
    assert unit == (5, 5) and box == ((10, 23), (10, 23))


def test_summarize_draws_the_receptive_field_on_a_real_image(tmp_path, capsys):
    # in this process (tests/inprocess.py); summarize.py's __main__ runs in tests/test_summarize.py
    code, err = run_entry("summarize.py", ["model=lenet5", "data=digits", "rf_image=true", "rf_layer=features.6",
                                           f"hydra.run.dir={tmp_path}"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    assert (tmp_path / "receptive_field_image.png").is_file()
    code, err = run_entry("summarize.py", ["model=lenet5", "data=digits", "rf_image=true", "rf_layer=classifier.1",
                                           f"hydra.run.dir={tmp_path}"], capsys, stage="run")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: rf_layer='classifier.1'"), err[-3000:]


# the shortened commands of the rows that had none --------------------------------------
def metrics_of(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# slow: a textbook row's sweep of four runs, about 15 s; default: each loss's definition and the margins (above)
@pytest.mark.slow
def test_losses_row_logs_margins_and_mae_trains_far_slower_than_cross_entropy(tmp_path):
    # the row's command, 2 epochs, seed 1: test acc cross-entropy ~0.90, MAE ~0.51; inside the margin ~0.22 and 1.0
    result = run_script("train.py", "-m", "experiment=smoke", "loss=cross_entropy,hinge,mse,mae",
                        "callbacks=diagnostics", "seed=1", "trainer.max_epochs=2", *SHORT,
                        f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    inside, acc = {}, {}
    for loss in ("cross_entropy", "hinge", "mse", "mae"):
        run = run_of(tmp_path, f"loss={loss}")
        logged = events(run)
        assert "xray/margins" in logged.Tags()["histograms"], loss
        assert len(logged.Scalars("watch/inside_margin")) >= 2, loss  # after each validation
        inside[loss], acc[loss] = last(logged, "watch/inside_margin"), metrics_of(run)["test/acc"]
    assert acc["mae"] < acc["cross_entropy"] - 0.25, acc
    # MAE: every image inside the margin
    assert inside["mae"] > 0.99 and inside["cross_entropy"] < inside["mse"], inside


@pytest.mark.parametrize("option", ["standardize", "minmax", "robust", "none"])
def test_each_feature_normalization_gives_the_training_split_its_statistics(option):
    from datamodules import DigitsDataModule

    data = DigitsDataModule(normalize=option, batch_size=256, seed=1)
    data.setup()
    x = torch.cat([images for images, _ in data.train_dataloader()])
    assert x.shape[0] == 1293  # the whole training split, on which the statistics were computed
    if option == "standardize":
        assert abs(x.mean()) < 1e-4 and abs(x.std(unbiased=False) - 1) < 1e-4
    elif option == "minmax":
        assert (x.min(), x.max()) == (0.0, 1.0)
    elif option == "robust":
        q25, median, q75 = torch.quantile(x.flatten(), torch.tensor([0.25, 0.5, 0.75]))
        assert abs(median) < 1e-6 and abs(q75 - q25 - 1) < 0.01  # median 0, interquartile range 1
    else:
        assert (x.min(), x.max()) == (0.0, 255.0) and torch.equal(x, x.round())  # the raw pixel values


# slow: a textbook row's sweep of four runs, about 10 s; default: each option's statistics
#   (test_each_feature_normalization_gives_the_training_split_its_statistics)
@pytest.mark.slow
def test_the_feature_normalization_row_runs_every_option(tmp_path):
    result = run_script("train.py", "-m", "experiment=smoke", "data.normalize=standardize,minmax,robust,none", "seed=1",
                        "trainer.max_epochs=1", "trainer.limit_train_batches=3", *SHORT, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    for option in ("standardize", "minmax", "robust", "none"):
        metrics = metrics_of(run_of(tmp_path, f"data.normalize={option}"))
        assert metrics["status"] == "completed" and 0 <= metrics["test/acc"] <= 1, (option, metrics)


@pytest.mark.slow  # 12 epochs, about 12 s; default: the gap's definition (training/test_diagnostics.py)
def test_the_generalization_gap_is_logged_each_epoch_and_opens_without_dropout(tmp_path):
    # the row's command, its dropout-free arm, 12 epochs, seed 1 (the gap then ends at 0.05, 0.09, 0.05 for seeds 1-3;
    # with dropout 0.5 at -0.25 for seed 1: train/acc is measured with dropout on)
    result = run_script("train.py", "-m", "experiment=overfitting", "model.dropout=0.0", "seed=1",
                        "trainer.max_epochs=12", "test=false", "trainer.enable_progress_bar=false",
                        f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert len(events(run_dir).Scalars("watch/generalization_gap")) == 12  # one per epoch
    plain = metrics_of(run_dir)
    assert plain["train/acc"] > plain["val/acc"] and plain["watch/generalization_gap"] > 0.02, plain


# slow: up to 20 epochs, about 11 s; default: early_stopping composes beside diagnostics
#   (training/test_diagnostics.py)
@pytest.mark.slow
def test_early_stopping_ends_the_overfitting_run_before_max_epochs(tmp_path):
    # seed 1 stops at epoch 6 of 20 with patience 2 (seeds 2 and 3 at 18 and 20: one seed, a wide margin)
    result = run_script("train.py", "-m", "experiment=overfitting", "model.dropout=0.0",
                        "callbacks=[diagnostics,early_stopping]", "callbacks.early_stopping.patience=2", "seed=1",
                        "trainer.max_epochs=20", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    metrics = metrics_of(run)
    assert metrics["status"] == "completed" and metrics["epochs"] < 20 and "test/acc" in metrics, metrics


@pytest.mark.slow  # a sweep of eight runs, about 13 s; default: best_of reads made-up runs (test_compare.py)
def test_the_optimizer_grid_preset_runs_and_best_of_grid_reads_its_real_runs(tmp_path, capsys):
    result = run_script("train.py", "-m", "experiment=optimizer_lr_grid", "optimizer=sgd,adam",
                        "optimizer.lr=1e-3,1e-1", "seed=1,2", "trainer.max_epochs=1", "trainer.limit_train_batches=5",
                        *SHORT, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    # the row's second command, in this process
    code, err = run_entry("compare.py", [f"dir={tmp_path}", "best_of.by=optimizer"], capsys, stage="run")
    assert code == 0, err
    rows = {r["optimizer"]: r for r in json.loads((tmp_path / "best_of_grid.json").read_text())}
    assert set(rows) == {"sgd", "adam"}
    for row in rows.values():
        assert len(row["grid"]) == 2 and row["seeds"] == [1, 2] and 0 <= row["test_acc"] <= 1, row
        assert row["val_acc_best"] == pytest.approx(max(row["grid"].values()), abs=1e-4), row  # the winner: best on val
    assert "| adam |" in (tmp_path / "best_of_grid.md").read_text()
    assert (tmp_path / "best_of_grid_train_loss.png").is_file()  # the winners' curves, from the runs' own events
