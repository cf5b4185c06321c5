"""Each experiment knob acts as configured: optimizers, schedulers, augmentations,
dropout, L-BFGS, regularization, and the linear baselines against scikit-learn."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datamodules.base import ClassificationDataModule, TensorImages
from datamodules.transforms import AUGMENTATIONS
from helpers import ROOT
from inprocess import run_entry
from models import create_model
from training.schedulers import complete

CONFIGS = ROOT / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def composed(*overrides: str):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("name", options("optimizer"))
def test_each_optimizer_is_the_configured_class_with_the_configured_hyper_parameters(name):
    cfg = composed(f"optimizer={name}").optimizer
    optimizer = instantiate(cfg)(params=torch.nn.Linear(2, 2).parameters())
    assert type(optimizer) is get_class(cfg._target_)
    group = optimizer.param_groups[0]
    for key, value in OmegaConf.to_container(cfg).items():
        if not key.startswith("_"):
            assert group[key] == (tuple(value) if isinstance(value, list) else value), key


@pytest.mark.parametrize("name", options("scheduler"))
def test_each_scheduler_builds_and_moves_the_learning_rate(name):
    cfg = composed(f"scheduler={name}", "optimizer=momentum", "trainer.max_epochs=200").scheduler
    assert cfg.interval in ("step", "epoch")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    if cfg.factory is None:
        assert name == "none"
        return
    scheduler = complete(instantiate(cfg.factory), optimizer, total_steps=200)
    lrs = []
    for _ in range(200):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert len(set(round(lr, 12) for lr in lrs)) > 1, f"{name} never changed the learning rate"


class RandomImages(ClassificationDataModule):
    """60 random RGB images, 30 of them as the test split."""

    name, num_classes, in_channels, classes = "random", 3, 3, ["a", "b", "c"]

    def load(self):
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8, generator=generator)
        targets = torch.arange(60) % 3
        pool = TensorImages(images[:30], targets[:30])
        return pool, pool.targets, TensorImages(images[30:], targets[30:])


@pytest.mark.parametrize("augment", [a for a in AUGMENTATIONS if a != "none"])
def test_each_augmentation_changes_training_images_never_validation_or_test(augment):
    dm, plain = RandomImages(augment=augment, val_size=6), RandomImages(augment="none", val_size=6)
    dm.setup()
    plain.setup()
    torch.manual_seed(0)
    assert any(not torch.equal(dm.train_set[i][0], plain.train_set[i][0]) for i in range(8)), augment
    for split, reference in ((dm.val_set, plain.val_set), (dm.test_set, plain.test_set)):
        for i in range(len(split)):
            assert torch.equal(split[i][0], reference[i][0])


def test_dropout_acts_in_train_mode_only():
    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, dropout=0.5)
    x = torch.randn(4, 1, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def trained(tmp_path, capsys, *overrides: str) -> dict:
    """train.py with ``overrides`` run in this process (tests/inprocess.py): its metrics.json."""
    code, err = run_entry("train.py", ["experiment=smoke", *overrides, "trainer.enable_progress_bar=false",
                                       f"hydra.run.dir={tmp_path}"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    return json.loads((tmp_path / "metrics.json").read_text())


# slow: two epochs of L-BFGS, about 8 s (15 s beside another worker); default: L-BFGS keeps NCHW
#   (training/test_performance.py)
@pytest.mark.slow
def test_lbfgs_trains_lenet5_on_digits(tmp_path, capsys):
    """Two epochs: 0.967 test accuracy here (one epoch: 0.76); a broken closure or line search stays near 0.1."""
    metrics = trained(tmp_path, capsys, "optimizer=lbfgs", "scheduler=none", "data.batch_size=256",
                      "trainer.max_epochs=2")
    assert metrics["test/acc"] >= 0.85


def test_a_penalty_chosen_on_the_command_line_is_logged_on_its_own(tmp_path, capsys):
    trained(tmp_path, capsys, "regularization=l1", "regularization.strength=1e-3", "trainer.max_epochs=2",
            "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "test=false")
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    penalties = [e.value for e in events.Scalars("train/penalty")]
    assert len(penalties) == 2 and all(p > 0 for p in penalties)
    assert OmegaConf.load(tmp_path / ".hydra" / "config.yaml").regularization.kind == "l1"


def digits_features():
    """The digits split the zoo trains on, as flat standardized pixel vectors."""
    from datamodules import DigitsDataModule

    dm = DigitsDataModule(seed=0)
    dm.setup()

    def stack(split):
        xs, ys = zip(*(split[i] for i in range(len(split))))
        return torch.stack(xs).flatten(1), torch.tensor(ys)

    return stack(dm.train_set), stack(dm.test_set)


def fit_linear(name: str, loss, x, y, epochs: int = 60) -> torch.nn.Module:
    """One thread: ops this small spend longer handing work between two threads than doing it (1.4 s against
    3.6 s on two quiet cores, 35 s on two busy ones)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=1, image_size=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            for batch in torch.randperm(len(y)).split(64):
                optimizer.zero_grad()
                loss(model(x[batch].view(-1, 1, 32, 32)), y[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.mark.parametrize("name", ["logreg", "linear_svm"])
def test_linear_baselines_match_scikit_learn_within_2_points(name):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC
    from threadpoolctl import threadpool_limits

    from training.losses import MulticlassHinge

    (x, y), (x_test, y_test) = digits_features()
    with threadpool_limits(1):  # as fit_linear: one BLAS thread (logreg's fit: 0.5 s, against 17 s on two busy cores)
        reference = (LogisticRegression(max_iter=2000) if name == "logreg"
                     else LinearSVC(dual=False)).fit(x.numpy(), y.numpy())
    reference_acc = reference.score(x_test.numpy(), y_test.numpy())
    loss = torch.nn.CrossEntropyLoss() if name == "logreg" else MulticlassHinge()
    model = fit_linear(name, loss, x, y)
    with torch.no_grad():
        ours = (model(x_test.view(-1, 1, 32, 32)).argmax(1) == y_test).float().mean().item()
    assert ours >= reference_acc - 0.02, (ours, reference_acc)
