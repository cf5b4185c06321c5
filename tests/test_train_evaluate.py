"""End to end, as a user runs it: train.py, then evaluate.py on its best checkpoint."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import final_metrics, run_script
from inprocess import run_entry, run_entry_output


def test_training_on_digits_reaches_90_percent_test_accuracy(digits_run):
    run_dir, result = digits_run
    reported = final_metrics(result.stdout)
    assert reported["test/acc"] >= 0.90
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["test/acc"] == pytest.approx(reported["test/acc"], abs=1e-9)
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_the_model_line_counts_the_same_cost_as_metrics_json(digits_run):
    run_dir, result = digits_run
    written = json.loads((run_dir / "metrics.json").read_text())  # LeNet-5 at 32x32: 61,706 parameters, 416,520 MACs
    line = (f"model lenet5: {written['params'] / 1e3:.1f} k parameters, {written['macs'] / 1e3:.1f} k MACs "
            "per 1x32x32 image")
    assert line in result.stdout.splitlines()
    assert "Total FLOPs" not in result.stdout  # Lightning's table only with verbose=true


def test_checkpoints_best_and_last_load_with_weights_only(digits_run):
    run_dir, _ = digits_run
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    names = [p.name for p in checkpoints]
    assert "last.ckpt" in names and any(n.startswith("epoch") for n in names), names
    for path in checkpoints:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        config = checkpoint["hyper_parameters"]["config"]
        assert type(config) is dict and config["model"]["name"] == "lenet5"
    best = json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"]
    assert best.endswith(".ckpt") and "last" not in best


def test_tensorboard_holds_every_epoch_and_the_learning_rate(digits_run):
    run_dir, _ = digits_run
    epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert len(events.Scalars(tag)) == epochs == 10, (tag, tags)
    # one learning-rate tag whatever the optimizer; train/lr, shown after loss and accuracy (training/loggers.py)
    assert [t for t in tags if "lr" in t] == ["watch/lr"] and len(events.Scalars("watch/lr")) >= epochs
    lrs = [e.value for e in events.Scalars("watch/lr")]
    assert lrs[0] > lrs[-1] > 0  # the cosine schedule decays


def test_evaluate_reproduces_the_test_accuracy_and_writes_its_report(digits_run, tmp_path):
    run_dir, train_result = digits_run
    best = json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"]
    result = run_script("evaluate.py", f"ckpt_path={best}", f"hydra.run.dir={tmp_path}",
                        "trainer.enable_progress_bar=false")
    assert result.returncode == 0, result.stderr[-3000:]
    trained, evaluated = final_metrics(train_result.stdout), final_metrics(result.stdout)
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert set(report["per_class_acc"]) == {str(d) for d in range(10)}
    matrix = torch.tensor(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == report["test_images"] == 360
    assert matrix.trace() / matrix.sum() == pytest.approx(report["test/acc"], abs=1e-6)
    assert 0 < report["test/acc"] <= report["test/acc_top5"] <= 1
    png = (tmp_path / "confusion_matrix.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert "xray/confusion_matrix_test" in events.Tags()["images"]


def test_evaluate_accepts_a_run_dir_and_picks_its_best_checkpoint(digits_run, tmp_path, capsys):
    run_dir, _ = digits_run
    code, err = run_entry("evaluate.py", [f"ckpt_path={run_dir}", f"hydra.run.dir={tmp_path}",
                                          "trainer.enable_progress_bar=false"], capsys, stage="run")
    assert code == 0, err[-3000:]
    best = json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"]
    assert json.loads((tmp_path / "metrics.json").read_text())["checkpoint"].endswith(best.split("/")[-1])


def test_a_redirected_log_has_one_plain_line_per_epoch_and_train_log_the_same(digits_run):
    """stdout to a file or pipe (a SLURM job): a line per epoch as it ends, no progress-bar frames."""
    import re

    run_dir, result = digits_run
    pattern = re.compile(r"epoch (\d+)/(\d+)  train loss [\d.]+ acc [\d.]+  val loss [\d.]+ acc [\d.]+  lr [\d.e-]+  "
                         r"\d+ img/s  elapsed \d+:\d\d:\d\d  eta \d+:\d\d:\d\d$")
    printed = [m.groups() for m in map(pattern.search, result.stdout.splitlines()) if m]
    epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]  # the number of epochs run
    assert printed == [(str(k), str(epochs)) for k in range(1, epochs + 1)], result.stdout[-3000:]
    logged = [m.groups() for m in map(pattern.search, (run_dir / "train.log").read_text().splitlines()) if m]
    assert logged == printed
    assert "\r" not in result.stdout and "it/s]" not in result.stdout  # no bar frames in a file


def test_every_run_dir_holds_its_manifest(digits_run):
    import lightning
    import torchvision

    run_dir, _ = digits_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (manifest["packages"]["torch"] == torch.__version__.split("+")[0]
            or manifest["packages"]["torch"] in torch.__version__)
    assert (manifest["packages"]["torchvision"] in torchvision.__version__
            and manifest["packages"]["lightning"] == lightning.__version__)
    assert "train.py" in manifest["command"] and "experiment=smoke" in manifest["command"] and manifest["seed"] == 42
    assert len(manifest["git"]["commit"]) == 40 and isinstance(manifest["git"]["dirty"], bool)
    assert manifest["cpu"] and manifest["cpu_cores_usable"] >= 1 and manifest["torch_threads"] >= 1
    assert manifest["devices"] and "cudnn" in manifest and "cuda" in manifest and manifest["tags"] == []


def test_the_readmes_smoke_numbers_are_what_the_command_prints(digits_run):
    """README: `python train.py experiment=smoke` ... prints test acc X (seed 42), and the sample table's rows."""
    import re

    from helpers import ROOT

    run_dir, result = digits_run
    readme = (ROOT / "README.md").read_text()
    claimed = float(re.search(r"python train\.py experiment=smoke +# LeNet-5, 10 epochs: prints test acc "
                              r"([\d.]+) \(seed 42\)",
                              readme).group(1))
    printed = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[-4:-1]}
    assert claimed == pytest.approx(float(printed["test"][0]), abs=0.003)  # one digit of 360 either way (threads)
    table = re.search(r"\n +acc +loss +acc_best +acc_top5 +f1_macro\n +val +([\d.]+) +([\d.]+) +([\d.]+)"
                      r"\n +test +([\d.]+) +([\d.]+)", readme)
    assert [float(x) for x in table.groups()] == pytest.approx(
        [float(x) for x in printed["val"][:3] + printed["test"][:2]], abs=0.003)


def test_the_best_checkpoint_is_named_by_the_epoch_its_line_shows(digits_run):
    """Epochs are counted from 1 wherever a user reads them: the epoch lines and the checkpoint names agree
    (the best of "epoch 6/10" was epoch005-...ckpt)."""
    import re

    run_dir, result = digits_run
    lines = [re.search(r"epoch (\d+)/\d+ .* val loss [\d.]+ acc ([\d.]+)", line) for line in result.stdout.splitlines()]
    accs = {int(m.group(1)): float(m.group(2)) for m in lines if m}
    assert sorted(accs) == list(range(1, 11))
    best = json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"]
    named = int(re.search(r"epoch(\d+)-val_acc([\d.]+)\.ckpt", best).group(1))
    assert named == min(e for e in accs if accs[e] == max(accs.values()))  # the first epoch at the best accuracy


def test_a_fine_tune_says_so_in_its_first_line(digits_run, tmp_path, capsys, caplog):
    """ckpt_path= resumes in the lightning-hydra-template and fine-tunes here: the run says which, once."""
    run_dir, _ = digits_run
    caplog.set_level(logging.INFO, logger="train")  # the epoch lines (Hydra's logging set-up is not run in-process)
    code, out, err = run_entry_output("train.py", ["experiment=smoke", f"ckpt_path={run_dir}", "trainer.max_epochs=1",
                                                   "test=false", f"hydra.run.dir={tmp_path}"], capsys)
    assert code == 0, err[-3000:]
    first = out.splitlines()[0]
    assert first.startswith(f"fine-tune: weights from {run_dir}/checkpoints/epoch") and "(epoch " in first
    assert "a fresh optimizer and learning-rate schedule from epoch 1" in first and "resume=" in first
    assert "epoch 1/1 " in caplog.text  # a new run: epochs from 1
