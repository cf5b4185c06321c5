"""What a run shows a user: TensorBoard's HPARAMS and Scalars, the console, resumes, fine-tuning, evaluate.py's report.

The session's tiny sweep on digits (two optimizers x two seeds, two epochs of three batches: tests/conftest.py
seed_sweep_runs, also read by the sweep and TensorBoard tests) is read by most tests here.
"""

from __future__ import annotations

import csv
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import backend_context, plugin_data_pb2

from helpers import SWEEP_TINY, run_script
from inprocess import copy_run, digest, run_entry

SHARED = ("experiment=smoke", "data.batch_size=8", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
          "trainer.limit_val_batches=1", "trainer.limit_test_batches=1")


@pytest.fixture(scope="module")
def sweep(seed_sweep_runs):
    return seed_sweep_runs


RUNS = [f"optimizer={o},seed={s}" for o in ("adam", "sgd") for s in (1, 2)]


def hparams_content(run_dir) -> dict:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return events.PluginTagToContent("hparams")


def test_sweep_trials_are_named_by_what_varies_only(sweep):
    sweep_dir, _ = sweep
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == RUNS
    assert set(EventMultiplexer().AddRunsFromDirectory(str(sweep_dir)).Runs()) == set(RUNS)
    for run in RUNS:  # every override is still recorded
        recorded = set((sweep_dir / run / ".hydra" / "overrides.yaml").read_text().replace("- ", "").split())
        assert set(SWEEP_TINY) <= recorded and set(run.split(",")) <= recorded


def test_hparams_hold_the_chosen_options_and_knobs_and_no_code_or_paths(sweep):
    sweep_dir, _ = sweep
    for optimizer, lr in (("sgd", 0.1), ("adam", 1e-3)):
        content = hparams_content(sweep_dir / f"optimizer={optimizer},seed=2")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
        hparams = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
        assert {"optimizer": optimizer, "model": "lenet5", "data": "digits", "scheduler": "cosine",
                "loss": "cross_entropy", "experiment": "smoke"}.items() <= hparams.items()
        assert hparams["optimizer.lr"] == pytest.approx(lr) and hparams["seed"] == 2
        assert hparams["data.batch_size"] == 64  # digits' own
        assert hparams["trainer.max_epochs"] == 2 and "optimizer.weight_decay" in hparams
        assert not [k for k in hparams if "_target_" in k
                    or k.split(".")[0] in ("paths", "performance", "callbacks", "logger")]
        # logged once, and without an experiment summary: TensorBoard builds the columns from every run
        assert "_hparams_/experiment" not in content
        assert start == plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]).session_start_info


def test_tensorboard_lists_the_swept_columns_first(sweep):
    """TensorBoard's own code (its hparams plugin's backend) on the two runs: what varies comes first, marked."""
    sweep_dir, _ = sweep
    runs = {run: hparams_content(sweep_dir / run) for run in RUNS}
    experiment = backend_context.api_pb2.Experiment(
        hparam_infos=backend_context.Context(None)._compute_hparam_infos(runs))
    backend_context._sort_and_reduce_to_hparams_limit(experiment, 0)
    columns = [(info.name, info.differs) for info in experiment.hparam_infos]
    assert columns[:3] == [("optimizer", True), ("optimizer.lr", True), ("seed", True)], columns
    assert ("model", False) in columns and ("experiment", False) in columns


def test_one_learning_rate_tag_and_loss_and_accuracy_first(sweep):
    sweep_dir, _ = sweep
    for run in RUNS:
        events = EventAccumulator(str(sweep_dir / run))
        events.Reload()
        tags = events.Tags()["scalars"]
        assert "watch/lr" in tags and not [t for t in tags if t.startswith("lr") or t == "epoch"
                                           or t.startswith("hp/")], tags
        assert sorted({t.split("/")[0] for t in tags}) == ["train", "val", "watch", "x_test"]  # TensorBoard's order


def test_the_console_is_quiet_and_ends_with_a_rounded_table_and_the_run_dir(sweep):
    sweep_dir, result = sweep
    out = result.stdout + result.stderr
    for noise in ("GPU available", "TPU available", "litlogger", "LeafSpec", "┃", "final metrics:", "Restoring states"):
        assert noise not in out, noise
    assert "model lenet5: 61.7 k parameters, 416.5 k MACs per 1x32x32 image" in result.stdout
    lines = result.stdout.splitlines()
    assert lines[-1] == f"run dir: {sweep_dir / 'optimizer=adam,seed=2'}"  # the sweep's last run
    header, val, test = lines[-4:-1]
    assert header.split() == ["acc", "loss", "acc_best", "acc_top5", "f1_macro"]
    written = json.loads((sweep_dir / "optimizer=adam,seed=2" / "metrics.json").read_text())
    assert test.split()[:3] == ["test", f"{written['test/acc']:.4f}", f"{written['test/loss']:.4f}"]
    assert val.split()[0] == "val" and all(len(x.split(".")[-1]) == 4 for x in val.split()[1:])


@pytest.mark.slow  # a run of its own for Lightning's own lines, about 9 s
def test_verbose_brings_lightnings_output_back(tmp_path):
    result = run_script("train.py", *SHARED, "test=false", "verbose=true", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GPU available" in result.stdout + result.stderr and "Total FLOPs" in result.stdout


def test_resume_with_another_max_epochs_under_a_run_length_schedule_is_refused(sweep, capsys, tmp_path):
    sweep_dir, _ = sweep
    run_dir = copy_run(sweep_dir / "optimizer=sgd,seed=1", tmp_path / "optimizer=sgd")
    before = digest(run_dir)
    code, err = run_entry("train.py", [f"resume='{run_dir}'", "trainer.max_epochs=3"], capsys, stage="run")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: resume= with trainer.max_epochs=3: this run's learning-rate schedule is laid out for 2 epochs; resume "
        "it as it was (leave trainer.max_epochs out), or train a new run from its weights: ckpt_path=<its checkpoint> "
        "trainer.max_epochs=3"]
    assert digest(run_dir) == before


# slow: two runs, about 20 s; default: bit-exact resume (reliability/test_resume.py) and the loggers' purge_step
#   (training/test_loggers.py)
@pytest.mark.slow
def test_resume_with_csv_keeps_the_first_epochs_rows_and_extends_a_schedule_without_length(tmp_path):
    run = ("experiment=smoke", "data.batch_size=8", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
           "test=false", "logger=csv", "scheduler=none")
    first = run_script("train.py", *run, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_script("train.py", f"resume={tmp_path}", "trainer.max_epochs=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with (tmp_path / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    val_epochs = [int(row["epoch"]) for row in rows if row.get("val/acc")]
    assert val_epochs == [0, 1, 2]  # the first run's epochs 0 and 1, then the resumed epoch
    assert len([row for row in rows if row.get("train/lr")]) == 3
    assert "epoch 3/3" in resumed.stdout and "epoch 1/" not in resumed.stdout


# slow: a run of its own, about 10 s; default: test_train_evaluate.py::test_a_fine_tune_says_so_in_its_first_line
@pytest.mark.slow
def test_ckpt_path_starts_a_new_run_from_the_weights(tmp_path, capsys):
    """Fine-tuning at an lr too small to move the weights: the new run's first validation is the old run's."""
    source = tmp_path / "optimizer=sgd"  # '=' in the path: quoted below
    code, err = run_entry("train.py", [*SHARED, "optimizer=sgd", f"hydra.run.dir='{source}'"], capsys, stage="run")
    assert code == 0, err[-3000:]
    result = run_script("train.py", *SHARED, "optimizer=sgd", "optimizer.lr=1e-12", "test=false",
                        f"ckpt_path='{source}'", f"hydra.run.dir={tmp_path / 'new'}")
    assert result.returncode == 0, result.stderr[-3000:]
    old = json.loads((source / "metrics.json").read_text())
    new = json.loads((tmp_path / "new" / "metrics.json").read_text())
    assert new["val/loss"] == pytest.approx(old["val/loss"], abs=1e-5) and new["epochs"] == 1
    assert "epoch 1/1" in result.stdout  # a new run: epochs from 1, in its own dir
    code, err = run_entry("train.py", [f"ckpt_path='{source}'", f"resume='{source}'"], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: give resume="), err


def test_an_added_key_that_nothing_reads_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its run dir would be outputs/<time>_... here: none is left
    code, err = run_entry("train.py", ["experiment=smoke", "+ckpt_pth=outputs/x"], capsys)
    assert code == 2 and not any(tmp_path.iterdir())
    assert err.strip().splitlines() == [
        "error: +ckpt_pth=outputs/x: nothing reads ckpt_pth, so the run would ignore it (did you mean ckpt_path?); "
        "keys: callbacks, ckpt_path, data, logger, loss, model, optimized_metric, optimizer, paths, performance, "
        "regularization, resume, scheduler, seed, tags, task_name, test, trainer, verbose"]


# slow: an evaluate.py of its own, about 8 s; default:
#   test_train_evaluate.py::test_evaluate_reproduces_the_test_accuracy_and_writes_its_report
@pytest.mark.slow
def test_evaluate_prints_per_class_table_and_confusion_matrix_and_names_the_model(sweep, tmp_path):
    sweep_dir, _ = sweep
    source = sweep_dir / "optimizer=sgd,seed=1"
    result = run_script("evaluate.py", f"ckpt_path='{source}'", cwd=tmp_path)  # quoted: '=' in a path
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").iterdir()
    assert run_dir.name.startswith("evaluate_lenet5_")  # what it is first, the time last
    assert "Testing" not in result.stdout and "━" not in result.stdout  # no progress bar in a file
    lines = result.stdout.splitlines()
    report = json.loads((run_dir / "metrics.json").read_text())
    start = lines.index("confusion matrix (rows: true, columns: predicted)")
    matrix = [[int(c) for c in line.split()[1:]] for line in lines[start + 2:start + 12]]
    assert matrix == report["confusion_matrix"]
    per_class = {line.split()[0]: float(line.split()[1])
                 for line in lines[lines.index(next(row for row in lines if row.startswith("class "))) + 1:start - 1]}
    assert per_class == {c: pytest.approx(a, abs=5e-5) for c, a in report["per_class_acc"].items()}
    assert lines[-1] == f"run dir: {run_dir}" and "GPU available" not in result.stdout + result.stderr


def test_confusion_matrix_figure_is_titled_and_readable_at_tensorboards_size():
    from core.figures import confusion_matrix_figure

    figure = confusion_matrix_figure([[5] * 10] * 10, [str(i) for i in range(10)], title="lenet5 on digits (test)")
    axes = figure.axes[0]
    assert axes.get_title() == "lenet5 on digits (test)"
    width = figure.get_size_inches()[0] * figure.dpi  # TensorBoard shows it about 400 px wide
    smallest = min(text.get_fontsize() for text in axes.texts + axes.get_xticklabels())
    assert width <= 600 and smallest * 400 / width >= 8  # the counts stay at least 8 px on screen


def test_compare_places_validation_points_at_their_epochs_without_an_epoch_scalar(tmp_path, capsys):
    from reporting.comparison import val_curve

    code, err = run_entry("train.py", [*SHARED, "trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2",
                                       "test=false", f"hydra.run.dir={tmp_path}"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    epochs, accs = val_curve(tmp_path)
    assert epochs == [2, 4] and len(accs) == 2
