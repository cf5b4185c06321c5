"""Every preset in configs/experiment/ composes, sweeps only what exists, and trains one step.

The sweeps themselves (dozens of CIFAR-10 runs each) are far too long for a test: each cell of
each sweep is composed (which checks every group option and key it names), and each experiment's
fixed settings train one step on digits, all experiments in one train.py -m process.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from datamodules.transforms import AUGMENTATIONS, NORMALIZATIONS
from helpers import ROOT, run_script

CONFIGS = ROOT / "configs"
EXPERIMENTS = sorted(path.stem for path in (CONFIGS / "experiment").glob("*.yaml"))
# checked by the data module at run time, not by composition
VALID_VALUES = {"data.augment": AUGMENTATIONS, "data.normalize": NORMALIZATIONS}
ONE_STEP = ("data=digits", "trainer=cpu", "data.batch_size=8", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=False")


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
    if name != "smoke":
        assert sweep.get("seed") == ["1", "2", "3"], "a comparison repeats every cell over three seeds"
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


@pytest.fixture(scope="module")
def one_step_each(tmp_path_factory):
    """Every experiment's fixed settings (no sweep), one training step on digits, in one process."""
    sweep_dir = tmp_path_factory.mktemp("experiments")
    result = run_script("train.py", "-m", f"experiment={','.join(EXPERIMENTS)}", *ONE_STEP,
                        "hydra.sweep.subdir=${hydra:runtime.choices.experiment}", f"hydra.sweep.dir={sweep_dir}")
    return sweep_dir, result


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_trains_one_step(one_step_each, name):
    sweep_dir, result = one_step_each
    run_dir = sweep_dir / name
    metrics_file = run_dir / "metrics.json"
    assert metrics_file.is_file(), result.stderr[-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert metrics.get("status", "completed") == "completed", metrics
    assert math.isfinite(metrics["val/loss"]) and 0 <= metrics["test/acc"] <= 1
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    fixed = yaml.safe_load((ROOT / "configs" / "experiment" / f"{name}.yaml").read_text())
    model = next((d["override /model"] for d in fixed.get("defaults", []) if "override /model" in d), None)
    assert model is None or config["model"]["name"] == model
