"""Each model's default recipe trains it well, whatever optimizer a sweep picks.

- every optimizer of configs/optimizer/ at its own default lr reaches >= 0.85 test
  accuracy with ``experiment=smoke`` (LeNet-5 on digits, 10 epochs);
- each linear baseline with its defaults (``model=logreg`` / ``linear_svm``: its
  loss comes with the model, no augmentation through configs/recipe/) does at
  least as well as scikit-learn's own model of the same kind on the same
  training images and the same test images.

Both train dozens of epochs, so they are ``slow``: ``python -m pytest -m slow tests/test_recipes.py``.
"""

from __future__ import annotations

import json
import statistics

import pytest

from helpers import ROOT, run_script

OPTIMIZERS = sorted(path.stem for path in (ROOT / "configs" / "optimizer").glob("*.yaml"))
SEEDS = (1, 2, 3)


def sweep(tmp_path, *overrides: str) -> dict[str, dict]:
    """Run one ``train.py -m`` sweep; {run dir name: its metrics.json}."""
    result = run_script("train.py", "-m", *overrides, "trainer.enable_progress_bar=False", "logger=none",
                        f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=${hydra:job.override_dirname}", timeout=3600)
    runs = {path.parent.name: json.loads(path.read_text()) for path in tmp_path.glob("*/metrics.json")}
    assert runs, result.stderr[-3000:]
    return runs


@pytest.mark.slow
def test_every_optimizer_learns_the_smoke_preset_at_its_own_default_lr(tmp_path):
    runs = sweep(tmp_path, "experiment=smoke", f"optimizer={','.join(OPTIMIZERS)}", "seed=1")
    accuracy = {name.split("optimizer=")[1].split(",")[0]: m.get("test/acc", 0.0) for name, m in runs.items()}
    assert set(accuracy) == set(OPTIMIZERS), sorted(runs)
    assert all(acc >= 0.85 for acc in accuracy.values()), accuracy


def digits_split(seed: int):
    """The training and test images of ``data=digits`` with that seed, as the runs see them (flattened)."""
    from datamodules.digits import DigitsDataModule

    datamodule = DigitsDataModule(seed=seed, batch_size=4096, pipeline="tensor")
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    (x_train, y_train), = list(datamodule.train_dataloader())
    (x_test, y_test), = list(datamodule.test_dataloader())
    return x_train.flatten(1).numpy(), y_train.numpy(), x_test.flatten(1).numpy(), y_test.numpy()


def sklearn_accuracy(model: str, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    x_train, y_train, x_test, y_test = digits_split(seed)
    estimator = {"logreg": LogisticRegression(max_iter=5000), "linear_svm": LinearSVC(max_iter=20000)}[model]
    return float(estimator.fit(x_train, y_train).score(x_test, y_test))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["logreg", "linear_svm"])
def test_a_linear_baseline_with_its_defaults_does_as_well_as_scikit_learn(tmp_path, model):
    runs = sweep(tmp_path, "data=digits", "trainer=cpu", f"model={model}", f"seed={','.join(map(str, SEEDS))}")
    ours = [m["test/acc"] for m in runs.values()]
    theirs = [sklearn_accuracy(model, seed) for seed in SEEDS]
    assert len(ours) == len(SEEDS)
    assert statistics.mean(ours) >= statistics.mean(theirs), (model, ours, theirs)


@pytest.mark.parametrize("model, loss", [("linear_svm", "MulticlassHinge"), ("rff_svm", "MulticlassHinge"),
                                         ("ovr_logreg", "OneVsRestLogistic"), ("logreg", "CrossEntropy")])
def test_a_linear_baseline_brings_its_loss_and_no_crops_and_the_command_line_still_wins(model, loss):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}"])
        assert cfg.loss._target_.endswith(loss) and cfg.data.augment == "none"
        cfg = compose("train", overrides=[f"model={model}", "loss=mse", "data.augment=crop"])
        assert cfg.loss._target_ == "training.losses.OneHotMSE", cfg.loss
        assert cfg.data.augment == "crop"
        assert compose("train", overrides=["model=resnet20"]).loss._target_.endswith("CrossEntropy")


@pytest.mark.parametrize("model", ["logreg", "linear_svm"])
def test_a_linear_baselines_lr_is_for_the_default_optimizer_only(model):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        assert compose("train", overrides=[f"model={model}"]).optimizer.lr == 0.01  # nesterov's own is 0.1
        for optimizer in ("adam", "sgd"):  # another optimizer keeps its own default
            own = compose("train", overrides=[f"optimizer={optimizer}"]).optimizer.lr
            assert compose("train", overrides=[f"model={model}", f"optimizer={optimizer}"]).optimizer.lr == own
        assert compose("train", overrides=[f"model={model}", "optimizer.lr=0.2"]).optimizer.lr == 0.2
