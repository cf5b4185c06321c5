"""Every preset in configs/experiment/ composes, sweeps only what exists, and trains one step.

The sweeps themselves (dozens of CIFAR-10 runs each) are far too long for a test: each cell of
each sweep is composed (which checks every group option and key it names), and each experiment's
fixed settings train one step on digits, each in this process.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import traceback

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from datamodules.transforms import AUGMENTATIONS, NORMALIZATIONS
from helpers import ROOT
from inprocess import run_entry, run_entry_output
from models.resnet import PadShortcut

CONFIGS = ROOT / "configs"
EXPERIMENTS = sorted(path.stem for path in (CONFIGS / "experiment").glob("*.yaml"))
# checked by the data module at run time, not by composition
VALID_VALUES = {"data.augment": AUGMENTATIONS, "data.normalize": NORMALIZATIONS}
ONE_STEP = ("data=digits", "data.val_size=200", "trainer=cpu", "data.batch_size=8", "trainer.max_epochs=1",
            "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
            "trainer.enable_progress_bar=False")


def sweep_of(name: str) -> dict[str, list[str]]:
    """The experiment's hydra.sweeper.params, each value list split."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}"], return_hydra_config=True)
    return {key: str(values).split(",") for key, values in (cfg.hydra.sweeper.params or {}).items()}


def test_the_ablations_and_the_architecture_comparison_exist():
    assert {"smoke", "compare_architectures", "optimizer_ablation", "activation_ablation", "regularization_ablation",
            "normalization_ablation", "loss_ablation"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_cell_of_the_sweep_composes(name):
    text = (CONFIGS / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_"), "an experiment overrides groups at the top level"
    sweep = sweep_of(name)
    if name != "smoke":  # a comparison or a published recipe: every cell over three seeds
        assert sweep.get("seed") == ["1", "2", "3"], "a comparison repeats every cell over three seeds"
    if name.endswith("_ablation") or name.startswith("compare_"):
        assert len(sweep) >= 2
    for key, values in sweep.items():
        assert len(values) == len(set(values)) >= 1, (key, values)
        if key in VALID_VALUES:
            assert set(values) <= set(VALID_VALUES[key]), (key, values)
    keys = [k for k in sweep if k != "seed"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for combo in itertools.product(*(sweep[k] for k in keys)):
            overrides = [f"experiment={name}", *(f"{k}={v}" for k, v in zip(keys, combo))]
            cfg = compose("train", overrides=overrides)  # fails on an unknown option or key
            for key, value in zip(keys, combo):
                if not (CONFIGS / key).is_dir():  # a group: composing it was the check
                    assert same(OmegaConf.select(cfg, key), value), (overrides, key)


def same(composed, swept: str) -> bool:
    if isinstance(composed, (int, float)) and not isinstance(composed, bool):
        return float(composed) == float(swept)
    return str(composed).lower() == swept.lower()


# RGB weights: one step on the JPEG copy below
NEEDS_WEIGHTS = {"resnet_cifar_finetune": "akamaster/resnet20-12fca82f.th"}
ON_DIGITS = [name for name in EXPERIMENTS if name not in NEEDS_WEIGHTS]


@pytest.fixture(scope="module")
def one_step_each(tmp_path_factory):
    """Every experiment's fixed settings (no sweep), one training step on digits, each in this process (a
    preset's global switches, performance.*, are restored when its fit ends: training/performance.py)."""
    sweep_dir = tmp_path_factory.mktemp("experiments")
    errors = {}
    for name in ON_DIGITS:
        run = [f"experiment={name}", *ONE_STEP, f"hydra.run.dir={sweep_dir / name}"]
        try:
            code, _, err = run_entry_output("train.py", run)
        except Exception:  # noqa: BLE001 -- a bug (a traceback) fails its own preset's test, not the other 21
            code, err = 1, traceback.format_exc()
        errors[name] = err if code not in (0, None) else ""
    return sweep_dir, errors


@pytest.mark.parametrize("name", ON_DIGITS)
def test_every_experiment_trains_one_step(one_step_each, name):
    sweep_dir, errors = one_step_each
    run_dir = sweep_dir / name
    metrics_file = run_dir / "metrics.json"
    assert metrics_file.is_file() and not errors[name], errors[name][-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert metrics.get("status", "completed") == "completed", metrics
    assert math.isfinite(metrics["val/loss"]) and 0 <= metrics["test/acc"] <= 1
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    fixed = yaml.safe_load((ROOT / "configs" / "experiment" / f"{name}.yaml").read_text())
    model = next((d["override /model"] for d in fixed.get("defaults", []) if "override /model" in d), None)
    assert model is None or config["model"]["name"] == model


# slow: about 23 s (60,000 JPEGs decoded, ResNet-20 on them); default: the preset composes
#   (test_every_cell_of_the_sweep_composes), the files load (models/test_community_weights.py)
@pytest.mark.slow
def test_the_fine_tune_preset_trains_one_step_from_published_weights(cifar10_jpeg, tmp_path, capsys):
    """experiment=resnet_cifar_finetune on the JPEG copy, from akamaster's ResNet-20: one step, weights recognised
    (in this process: the sweep above runs train.py's __main__)."""
    weights = ROOT.parent / "shared" / "reference" / NEEDS_WEIGHTS["resnet_cifar_finetune"]
    if not weights.is_file():
        pytest.skip(f"{weights} is not here")
    root, cache = cifar10_jpeg
    one_step = [o for o in ONE_STEP if not o.startswith(("data=", "data.val_size"))]
    code, err = run_entry("train.py", ["experiment=resnet_cifar_finetune", f"model.weights={weights}",
                                       "data=image_folder", f"data.root={root}", f"paths.data_dir={cache}",
                                       "data.val_size=100", *one_step, f"hydra.run.dir={tmp_path / 'run'}"],
                          capsys, stage="run")
    assert code in (0, None), err[-3000:]
    assert "akamaster/pytorch_resnet_cifar10" in err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best_checkpoint"].endswith("last.ckpt")  # the final model is what is tested


def composed(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}", *overrides])


def test_resnet_cifar_paper_is_section_4_2():
    """He et al. 2015, section 4.2: SGD 0.9, wd 1e-4, batch 128, lr 0.1 / 10 at 32k and 48k, stop at 64k, 45k/5k."""
    cfg = composed("resnet_cifar_paper")
    assert cfg.model.name == "resnet20"
    # its nulls: the builder's, the paper's option A, no dropout
    net = instantiate(cfg.model, num_classes=10, in_channels=3)
    assert (any(isinstance(m, PadShortcut) for m in net.modules())
            and {m.p for m in net.modules() if isinstance(m, nn.Dropout)} == {0})
    assert cfg.optimizer.lr == 0.1 and cfg.optimizer.momentum == 0.9 and not cfg.optimizer.get("nesterov", False)
    assert cfg.optimizer.weight_decay == 1e-4 and cfg.data.batch_size == 128 and cfg.data.val_size == 5000
    assert cfg.data.augment == "standard" and cfg.data.crop_padding == 4 and cfg.loss.label_smoothing == 0
    assert list(cfg.scheduler.factory.milestones) == [32000, 48000] and cfg.scheduler.factory.gamma == 0.1
    assert cfg.scheduler.interval == "step" and cfg.scheduler.factory.warmup_steps == 0
    assert cfg.trainer.max_steps == 64000 and cfg.trainer.max_epochs * 352 >= 64000  # 352 batches of 45k images
    final = composed("resnet_cifar_paper_final")  # Table 6's protocol: all 50k, the final model tested
    assert (final.data.val_size == 0 and final.trainer.limit_val_batches == 0
            and final.callbacks.model_checkpoint is None)
    assert final.trainer.max_epochs * 391 >= 64000 and final.trainer.max_steps == 64000
    deep = composed("resnet110_cifar_paper")
    assert deep.model.name == "resnet110" and deep.scheduler.factory.warmup_steps == 400
    assert deep.optimizer.lr * deep.scheduler.factory.warmup_factor == pytest.approx(0.01)
    assert deep.trainer.max_steps == 64000 and deep.optimizer.weight_decay == 1e-4


def test_paper_schedule_in_iterations():
    """The lr the paper's schedule gives at each iteration (ResNet-110's warm-up included)."""
    import torch

    from training.schedulers import warmup_multistep

    def lrs(warmup: int, steps: list[int]) -> list[float]:
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        factor = warmup_multistep(optimizer, [32000, 48000], 0.1, warmup, 0.1).lr_lambdas[0]
        return [round(0.1 * factor(step), 10) for step in steps]

    assert lrs(0, [0, 31999, 32000, 47999, 48000, 63999]) == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert lrs(400, [0, 399, 400, 32000]) == [0.01, 0.01, 0.1, 0.01]


DATA = sorted(path.stem for path in (CONFIGS / "data").glob("*.yaml"))
SWEEPS_AUGMENTATION = {"augmentation_ablation"}  # asks what augmentation does: sets it on purpose


@pytest.fixture(scope="module")
def own_data():
    """Each data set's own config as train.yaml composes it, composed once for every preset below."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return {data: compose("train", overrides=[f"data={data}"]).data for data in DATA}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_a_preset_run_on_other_data_keeps_that_data_sets_augmentation_and_split(name, own_data):
    """experiment=lenet5_cifar data=mnist must not switch on the flips that MNIST's config rules out: a preset may
    turn augmentation off (a linear model on pixels), never choose it for a data set it was not written for."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for data, own in own_data.items():
            cfg = compose("train", overrides=[f"experiment={name}", f"data={data}"]).data
            if name not in SWEEPS_AUGMENTATION:
                assert cfg.augment in (own.augment, "none"), (name, data, cfg.augment, own.augment)
            assert cfg.val_size == own.val_size or cfg.val_size == 0 or isinstance(cfg.val_size, float), (name, data)


def test_each_data_set_defaults_to_its_published_augmentation():
    """The policy lives in the data config, with its source: flips only where they keep the label."""
    expected = {"cifar10": "standard", "cifar100": "standard", "image_folder": "standard", "mnist": "none",
                "fashion_mnist": "none", "digits": "none"}
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for data in DATA:
            assert compose("train", overrides=[f"data={data}"]).data.augment == expected[data], data
            comment = next(line for line in (CONFIGS / "data" / f"{data}.yaml").read_text().splitlines()
                           if line.startswith("augment:"))
            assert re.search(r"\b(19|20)\d\d\b", comment), f"{data}: the augment line cites its source"


def test_recipes_for_small_models_suit_them():
    """Linear models get no augmentation (a shifted pixel is a different feature to them); the SVM uses the hinge."""
    for name in ("logreg_cifar", "linear_svm_cifar"):
        cfg = composed(name)
        assert cfg.data.augment == "none" and cfg.trainer.max_epochs == 30
    assert composed("linear_svm_cifar").loss._target_.endswith("MulticlassHinge")
    assert composed("lenet5_cifar").model.name == "lenet5"
    fast = composed("resnet_cifar_fast")
    assert fast.trainer.max_epochs == 50 and fast.loss.label_smoothing == 0.1 and fast.performance.channels_last
