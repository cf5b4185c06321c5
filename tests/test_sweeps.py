"""Sweeps end to end, as a user runs them: train.py -m on digits, then compare.py on the sweep dir.

Each sweep is one train.py process (the runs share its start-up) with tiny runs: LeNet-5 on digits,
three training batches.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics

import matplotlib.image
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

import compare
from helpers import SWEEP_TINY, run_script
from reporting.comparison import val_curve


def run_dirs(sweep_dir):
    """Each run of a sweep: its overrides (as a set) -> its dir."""
    dirs = [p.parent for p in sweep_dir.rglob(".hydra")]
    return {frozenset(yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())) - set(SWEEP_TINY): d for d in dirs}


def csv_rows(path):
    with path.open() as file:
        return list(csv.DictReader(file))


def listed(sweep_dir):
    """compare.py's rows, by the overrides that set each run apart (as a set)."""
    return {frozenset(row["overrides"].split()): row for row in csv_rows(sweep_dir / "comparison.csv")}


@pytest.fixture(scope="module")
def seed_sweep(seed_sweep_runs, tmp_path_factory):
    """Two optimizers x two seeds: four runs, two cells (the session's sweep, copied), then compare.py on it."""
    sweep_dir = tmp_path_factory.mktemp("seed_sweep") / "sweep"
    shutil.copytree(seed_sweep_runs[0], sweep_dir, symlinks=True)
    compared = run_script("compare.py", f"dir={sweep_dir}")
    assert compared.returncode == 0, compared.stderr[-3000:]
    return sweep_dir, compared


def test_a_multirun_of_four_runs_is_listed_by_compare_with_each_runs_metrics(seed_sweep):
    sweep_dir, compared = seed_sweep
    runs = run_dirs(sweep_dir)
    assert set(runs) == {frozenset({f"optimizer={o}", f"seed={s}"}) for o in ("sgd", "adam") for s in (1, 2)}
    rows = listed(sweep_dir)
    assert set(rows) == set(runs)  # exactly those four
    for overrides, run_dir in runs.items():
        written = json.loads((run_dir / "metrics.json").read_text())
        row = rows[overrides]
        assert row["status"] == "completed"
        for column, key in (("val_acc_best", "val/acc_best"), ("test_acc", "test/acc"), ("test_loss", "test/loss")):
            assert float(row[column]) == pytest.approx(written[key], abs=1e-12)
        assert row["model"] == "lenet5" and row["data"] == "digits"
    assert "| optimizer=adam seed=1 | lenet5 | 1 | completed |" in compared.stdout


def test_train_py_records_size_cost_and_status_for_the_table(seed_sweep):
    sweep_dir, _ = seed_sweep
    for run_dir in run_dirs(sweep_dir).values():
        written = json.loads((run_dir / "metrics.json").read_text())
        assert written["params"] == 61_706 and written["macs"] > 400_000  # LeNet-5, 1 channel, 10 classes
        assert written["epochs"] == 2 and written["status"] == "completed"
        assert written["wall_time_s"] > 0 and written["train_images_per_s"] > 0
    row = csv_rows(sweep_dir / "comparison.csv")[0]
    assert int(row["params"]) == 61_706 and int(row["epochs"]) == 2


def test_a_cell_repeated_over_two_seeds_reports_mean_and_std(seed_sweep):
    sweep_dir, compared = seed_sweep
    cells = {row["overrides"]: row for row in csv_rows(sweep_dir / "comparison_cells.csv")}
    assert set(cells) == {"optimizer=sgd", "optimizer=adam"}
    runs = run_dirs(sweep_dir)
    for optimizer in ("sgd", "adam"):
        accs = [json.loads((runs[frozenset({f"optimizer={optimizer}", f"seed={s}"})] / "metrics.json")
                           .read_text())["test/acc"] for s in (1, 2)]
        cell = cells[f"optimizer={optimizer}"]
        assert (cell["runs"], cell["seeds"]) in (("2", "1 2"), ("2", "2 1"))
        assert float(cell["test_acc"]) == pytest.approx(statistics.fmean(accs))
        assert float(cell["test_acc_std"]) == pytest.approx(statistics.stdev(accs))
        assert f"{statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f}" in compared.stdout


def test_plots_are_png_images_and_the_curves_come_from_tensorboard(seed_sweep):
    sweep_dir, _ = seed_sweep
    for name in ("val_acc.png", "test_acc_vs_params.png", "test_acc_vs_macs.png", "test_acc_vs_wall_time.png"):
        assert (sweep_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(sweep_dir / name).shape
        assert height > 200 and width > 200
    for run_dir in run_dirs(sweep_dir).values():
        epochs, accs = val_curve(run_dir)
        assert epochs == [1, 2] and all(0 <= a <= 1 for a in accs)


def test_tensorboard_names_each_run_by_its_overrides(seed_sweep):
    """What `tensorboard --logdir <sweep dir>` lists."""
    sweep_dir, _ = seed_sweep
    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(sweep_dir))
    names = set(multiplexer.Runs())
    assert len(names) == 4
    for optimizer in ("sgd", "adam"):
        for seed in (1, 2):
            assert sum(f"optimizer={optimizer},seed={seed}" in name for name in names) == 1, names


def test_tensorboard_hparams_lists_every_run_with_its_swept_values_and_final_metrics(seed_sweep):
    sweep_dir, _ = seed_sweep
    for overrides, run_dir in run_dirs(sweep_dir).items():
        events = EventAccumulator(str(run_dir))
        events.Reload()
        content = events.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
        hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
        swept = dict(o.split("=") for o in overrides)
        assert hparams["optimizer"] == swept["optimizer"] and hparams["seed"] == int(swept["seed"])
        assert hparams["model"] == "lenet5" and hparams["optimizer.lr"] > 0
        # TensorBoard builds the columns from every run (reporting/records.py)
        assert "_hparams_/experiment" not in content
        written = json.loads((run_dir / "metrics.json").read_text())  # the metric columns: each curve's last value
        for tag, key in (("val/acc_best", "val/acc_best"), ("x_test/acc", "test/acc")):  # training/loggers.py
            assert events.Scalars(tag)[-1].value == pytest.approx(written[key])


def test_a_failed_run_does_not_stop_the_sweep_and_compare_marks_it(tmp_path):
    """A bad value refused while building (lr -1), a run that diverges (lr 1e6: the loss becomes
    infinite) and a good run, in one sweep: all three are tried, and compare.py lists all three."""
    result = run_script("train.py", "-m", *SWEEP_TINY, "optimizer.lr=-1,1e6,3e-3", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 1, result.stderr[-3000:]  # every run was tried; the sweep reports the failure
    # each failure says so in the one line a single run prints, then a summary names both: no traceback
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 5, result.stderr[-3000:]
    assert (lines[0].startswith("error: optimizer.lr must be a number > 0, got -1")
            and lines[1].startswith("error: training diverged"))
    assert lines[2].startswith("error: 2 of 3 runs of the sweep did not complete")
    assert sorted(line.split(":")[0].strip() for line in lines[3:]) == ["optimizer.lr=-1", "optimizer.lr=1000000.0"]
    runs = run_dirs(tmp_path)
    assert len(runs) == 3 and all((d / "metrics.json").is_file() for d in runs.values()), result.stderr[-3000:]
    compare.compare(tmp_path)
    rows = listed(tmp_path)
    assert set(rows) == set(runs)
    refused = rows[frozenset({"optimizer.lr=-1"})]
    assert refused["status"] == "failed" and "optimizer.lr must be a number > 0, got -1" in refused["error"]
    diverged = rows[frozenset({"optimizer.lr=1000000.0"})]
    assert diverged["status"] == "diverged" and "diverged" in diverged["error"]
    good = rows[frozenset({"optimizer.lr=0.003"})]
    assert good["status"] == "completed" and 0 < float(good["test_acc"]) <= 1
    assert "| optimizer.lr=-1 | lenet5 | 42 | failed: optimizer.lr must be" in (tmp_path / "comparison.md").read_text()


# slow: three trials, about 14 s; default: its best trial's report
#   (test_compare.py::test_optuna_best_trial_is_named)
@pytest.mark.slow
def test_an_optuna_search_of_three_trials_completes_and_reports_its_best(tmp_path):
    result = run_script("train.py", "hparams_search=optuna_lr_wd", *SWEEP_TINY, "hydra.sweeper.n_trials=3",
                        f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_dirs(tmp_path)
    assert len(runs) == 3
    trials = {}
    for overrides, run_dir in runs.items():
        swept = dict(o.split("=") for o in overrides if o.startswith("optimizer."))
        assert set(swept) == {"optimizer.lr", "optimizer.weight_decay"}
        assert 1e-4 <= float(swept["optimizer.lr"]) <= 0.3 and 1e-6 <= float(swept["optimizer.weight_decay"]) <= 1e-2
        trials[float(swept["optimizer.lr"])] = json.loads((run_dir / "metrics.json").read_text())["val/acc_best"]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(trials.values()))  # the sweeper maximized val/acc_best
    assert trials[best["best_params"]["optimizer.lr"]] == pytest.approx(best["best_value"])
    compare.compare(tmp_path)
    assert "Optuna's best trial: `optimizer.lr=" in (tmp_path / "comparison.md").read_text()


@pytest.mark.parametrize("launcher, target", [
    ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
])
def test_launchers_compose(launcher, target):
    from hydra import compose, initialize_config_dir

    from helpers import ROOT

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.tasks_per_node == 1


# slow: joblib workers, about 14 s; default: the sweep dir naming
#   (test_a_run_dir_name_is_one_folder_of_bounded_length, test_run_output.py)
@pytest.mark.slow
def test_a_parallel_sweep_with_a_path_in_its_overrides_keeps_every_run_inside_the_sweep_dir(tmp_path):
    """A '/' in an override's value would nest folders and '..' would leave the sweep dir:
    each run is one folder directly in it, named by its overrides (joblib runs them side by side)."""
    sweep_dir = tmp_path / "sweep"
    result = run_script("train.py", "-m", *SWEEP_TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                        "paths.data_dir=../../elsewhere/data,../../other/data", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # nothing written beside the sweep dir
    runs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    # named by what varies (the overrides every run shares are left out: cli/resolvers.py sweep_subdir)
    assert runs == ["paths.data_dir=.._.._elsewhere_data", "paths.data_dir=.._.._other_data"]
    assert all((sweep_dir / run / "metrics.json").is_file() for run in runs)
    # the two runs' epoch lines interleave on the console: each names its run
    epoch_lines = [line for line in result.stdout.splitlines() if " epoch " in line and "train loss" in line]
    assert len(epoch_lines) == 4 and all(any(f"] - {run}: epoch " in line for run in runs) for line in epoch_lines)


def test_a_run_dir_name_is_one_folder_of_bounded_length():
    from core.files import run_dirname

    assert run_dirname("data.root=/a/b,model=lenet5") == "data.root=_a_b,model=lenet5"
    long_a, long_b = "x=" + "1" * 300 + ",seed=1", "x=" + "1" * 300 + ",seed=2"
    assert len(run_dirname(long_a).encode()) <= 200 and "/" not in run_dirname(long_a)
    assert run_dirname(long_a) != run_dirname(long_b)  # cut names stay apart
