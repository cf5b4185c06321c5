"""compare.py on run dirs laid out as train.py writes them (no training here: see test_sweeps.py)."""

from __future__ import annotations

import csv
import json
import math
import statistics

import matplotlib.image
import pytest
import yaml

import compare
from core.errors import UserError
from helpers import run_script
from inprocess import digest, one_line, run_entry

PNG = b"\x89PNG\r\n\x1a\n"


def make_run(root, name, overrides, metrics=None, seed=42, model="lenet5", task="train"):
    """A run dir as train.py leaves it: .hydra/{config,overrides,hydra}.yaml and metrics.json."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    config = {"task_name": task, "seed": seed, "model": {"name": model, "_target_": "models.create_model"}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = {"hydra": {"runtime": {"choices": {"model": model, "data": "digits"}}}}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(choices))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def metrics(test_acc, val_acc_best=0.5, params=1000, macs=50_000, loss=1.0, **extra):
    return {"val/acc_best": val_acc_best, "val/loss": loss, "test/acc": test_acc, "test/loss": loss, "params": params,
            "macs": macs, "epochs": 3, "wall_time_s": 10.0, "train_images_per_s": 500.0, "status": "completed", **extra}


def rows(path):
    with path.open() as file:
        return list(csv.DictReader(file))


@pytest.fixture
def sweep(tmp_path):
    """Two optimizers x two seeds, one diverged run, one crashed run and an evaluate.py run dir."""
    shared = ["experiment=smoke", "trainer.max_epochs=3"]
    make_run(tmp_path, "optimizer=adam,seed=1", [*shared, "optimizer=adam", "seed=1"],
             metrics(0.90, params=2000), seed=1)
    make_run(tmp_path, "optimizer=adam,seed=2", [*shared, "optimizer=adam", "seed=2"],
             metrics(0.80, params=2000), seed=2)
    make_run(tmp_path, "optimizer=sgd,seed=1", [*shared, "optimizer=sgd", "seed=1"], metrics(0.60), seed=1)
    make_run(tmp_path, "optimizer=sgd,seed=2", [*shared, "optimizer=sgd", "seed=2"], metrics(0.70), seed=2)
    make_run(tmp_path, "optimizer.lr=1e6", [*shared, "optimizer.lr=1e6"], metrics(0.1, loss=float("nan")))
    make_run(tmp_path, "optimizer.lr=-1", [*shared, "optimizer.lr=-1"], None)  # crashed before metrics.json
    make_run(tmp_path, "evaluate_run", ["ckpt_path=x.ckpt"], {"test/acc": 0.99}, task="evaluate")
    return tmp_path


def test_every_training_run_is_listed_with_its_own_overrides_and_metrics(sweep, capsys):
    compare.compare(sweep)
    listed = {row["overrides"]: row for row in rows(sweep / "comparison.csv")}
    assert set(listed) == {"optimizer=adam seed=1", "optimizer=adam seed=2", "optimizer=sgd seed=1",
                           "optimizer=sgd seed=2", "optimizer.lr=1e6", "optimizer.lr=-1"}  # not the evaluate run
    assert float(listed["optimizer=adam seed=1"]["test_acc"]) == 0.90
    assert float(listed["optimizer=sgd seed=2"]["test_acc"]) == 0.70
    assert int(listed["optimizer=adam seed=2"]["params"]) == 2000
    assert listed["optimizer=adam seed=1"]["status"] == "completed"
    report = (sweep / "comparison.md").read_text()
    assert "Shared by every run: `experiment=smoke trainer.max_epochs=3`" in report
    assert report in capsys.readouterr().out


def test_diverged_and_crashed_runs_are_marked_not_dropped(sweep):
    compare.compare(sweep)
    listed = {row["overrides"]: row for row in rows(sweep / "comparison.csv")}
    assert listed["optimizer.lr=1e6"]["status"] == "diverged"
    assert listed["optimizer.lr=-1"]["status"] == "failed"
    assert "no metrics.json" in listed["optimizer.lr=-1"]["error"]
    assert listed["optimizer.lr=-1"]["test_acc"] == ""
    table = (sweep / "comparison.md").read_text()
    assert "| optimizer.lr=-1 | lenet5 | 42 | failed: no metrics.json" in table


def test_a_failed_status_and_error_written_by_train_py_are_shown(tmp_path):
    make_run(tmp_path, "a", ["optimizer.lr=-1"], {"status": "failed", "error": "Invalid learning rate: -1"})
    make_run(tmp_path, "b", ["optimizer.lr=0.1"], metrics(0.5))
    compare.compare(tmp_path)
    listed = {row["overrides"]: row for row in rows(tmp_path / "comparison.csv")}
    assert (listed["optimizer.lr=-1"]["status"],
            listed["optimizer.lr=-1"]["error"]) == ("failed", "Invalid learning rate: -1")


def test_seeds_of_one_cell_are_merged_into_mean_and_std(sweep):
    compare.compare(sweep)
    cells = {row["overrides"]: row for row in rows(sweep / "comparison_cells.csv")}
    assert set(cells) == {"optimizer=adam", "optimizer=sgd", "optimizer.lr=1e6", "optimizer.lr=-1"}
    adam = cells["optimizer=adam"]
    assert (int(adam["runs"]), adam["seeds"]) == (2, "1 2")
    assert float(adam["test_acc"]) == pytest.approx(0.85)
    assert float(adam["test_acc_std"]) == pytest.approx(statistics.stdev([0.9, 0.8]))
    assert "| optimizer=adam | lenet5 | 2 | completed | 2.0 k | 50.0 k | 0.5000 ± 0.0000 | 0.8500 ± 0.0707 | 3 |" in (
        sweep / "comparison.md").read_text()  # epochs: 3 in both seeds, a whole number without "± 0.0"


def test_reruns_with_the_same_seed_are_not_a_spread_over_seeds(tmp_path):
    make_run(tmp_path, "first", [], metrics(0.5))
    make_run(tmp_path, "second", [], metrics(0.7))
    compare.compare(tmp_path)
    assert not (tmp_path / "comparison_cells.csv").exists()
    assert {row["overrides"] for row in rows(tmp_path / "comparison.csv")} == {"first", "second"}


def test_sort_by_any_column_with_missing_values_last(sweep):
    compare.compare(sweep)  # default: test accuracy, best first
    assert [row["overrides"] for row in rows(sweep / "comparison.csv")][:4] == [
        "optimizer=adam seed=1", "optimizer=adam seed=2", "optimizer=sgd seed=2", "optimizer=sgd seed=1"]
    assert rows(sweep / "comparison.csv")[-1]["overrides"] == "optimizer.lr=-1"
    compare.compare(sweep, sort="params", ascending="true")
    params = [row["params"] for row in rows(sweep / "comparison.csv")]
    assert params == ["1000", "1000", "1000", "2000", "2000", ""]
    compare.compare(sweep, sort="test/acc", group=False)  # a metric's own name works too
    assert "mean ± std" not in (sweep / "comparison.md").read_text()
    assert not (sweep / "comparison_cells.csv").exists()


def test_plots_are_png_images_even_without_curves(sweep):
    compare.compare(sweep)
    for name in ("val_acc.png", "test_acc_vs_params.png", "test_acc_vs_macs.png", "test_acc_vs_wall_time.png"):
        path = sweep / name
        assert path.read_bytes()[:8] == PNG
        height, width = matplotlib.image.imread(path).shape[:2]
        assert height > 200 and width >= 600


def test_optuna_best_trial_is_named(tmp_path):
    make_run(tmp_path, "t0", ["optimizer.lr=0.001"], metrics(0.5, val_acc_best=0.5))
    make_run(tmp_path, "t1", ["optimizer.lr=0.0123456789"], metrics(0.6, val_acc_best=0.7))
    results = {"name": "optuna", "best_params": {"optimizer.lr": 0.0123456789}, "best_value": 0.7}
    (tmp_path / "optimization_results.yaml").write_text(yaml.safe_dump(results))
    compare.compare(tmp_path)
    assert "Optuna's best trial: `optimizer.lr=0.01235`, value 0.7000 (the run `optimizer.lr=0.0123456789`)" in (
        tmp_path / "comparison.md").read_text()


@pytest.mark.parametrize("argv, says", [
    (["color=red"], "color=red: there is no key 'color'; valid keys: ascending, best_of, dir, group, sort"),
    (["best_of.by=activation"], "best_of.by='activation': no run under"),
    (["sort=accuracy"], "sort='accuracy' is not a column; valid: run, overrides"),
    (["ascending=yes"], "ascending='yes' is not valid; valid: auto, true, false"),
    (["dir=/no/such/dir"], "dir='/no/such/dir' is not a directory"),
])
def test_bad_settings_get_one_line_and_exit_status_2(sweep, argv, says):
    result = run_script("compare.py", f"dir={sweep}", *argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert not (sweep / "comparison.md").exists()


def test_the_command_line_writes_into_dir_and_nothing_else(sweep):
    """A Hydra entry point that leaves no run dir, .hydra/ folder or log of its own in the tree it reads."""
    before = {p for p in sweep.rglob("*")}
    result = run_script("compare.py", f"dir={sweep}", "sort=params", "ascending=true", "group=false")
    assert result.returncode == 0, result.stderr[-3000:]
    written = {p.relative_to(sweep).as_posix() for p in set(sweep.rglob("*")) - before}
    assert written == {"comparison.md", "comparison.csv", "val_acc.png", "test_acc_vs_params.png",
                       "test_acc_vs_macs.png", "test_acc_vs_wall_time.png"}
    params = [int(row["params"]) for row in rows(sweep / "comparison.csv") if row["params"]]
    assert params == sorted(params) and params[-1] == 2000  # sort=params ascending=true


def test_a_dir_without_runs_says_so(tmp_path):
    with pytest.raises(UserError, match="no training runs under"):
        compare.compare(tmp_path)


def test_nan_in_metrics_json_reads_back(tmp_path):
    """train.py writes NaN / Infinity for a diverged run (json's extension): still a row, marked."""
    run = make_run(tmp_path, "a", ["optimizer.lr=1e6"], None)
    (run / "metrics.json").write_text('{"val/acc_best": NaN, "val/loss": Infinity, "test/acc": 0.1}')
    listed = compare.compare(tmp_path)
    assert listed[0]["status"] == "diverged" and math.isnan(listed[0]["val_acc_best"])


def test_plots_label_what_varies_and_draw_each_data_set_apart(tmp_path):
    """compare.py dir=outputs drew digits and CIFAR on one axis, under a legend three times wider than the plot."""
    from reporting.comparison import short_labels

    cells = [{"overrides": f"optimizer={o} optimizer.lr={lr}",
              "cell_overrides": [f"optimizer={o}", f"optimizer.lr={lr}"],
              "model": "lenet5"} for o, lr in (("adam", "0.001"), ("sgd", "0.1"))]
    assert short_labels(cells) == ("optimizer, lr", ["adam, 0.001", "sgd, 0.1"])
    for data, accs in (("digits", (0.9, 0.8)), ("cifar10", (0.5, 0.4))):
        for optimizer, acc in zip(("adam", "sgd"), accs):
            run = make_run(tmp_path, f"{data}_{optimizer}", [f"data={data}", f"optimizer={optimizer}"], metrics(acc))
            hydra = {"hydra": {"runtime": {"choices": {"model": "lenet5", "data": data}}}}
            (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    compare.compare(tmp_path)
    for data in ("digits", "cifar10"):
        for name in ("val_acc", "test_acc_vs_params", "test_acc_vs_macs", "test_acc_vs_wall_time"):
            height, width = matplotlib.image.imread(tmp_path / f"{name}_{data}.png").shape[:2]
            assert 600 <= width <= 1000 and height < width, (name, data, width)  # the legend below, not beside
    assert not (tmp_path / "val_acc.png").exists()


# best_of: each option at its best knob value (reporting/best_of_grid.py) ------------------------------------
@pytest.fixture
def grid(tmp_path):
    """Two optimizers x two lrs x three seeds. sgd: lr 0.1 wins on validation, though 0.01 has the better test
    accuracy; adam: 0.001."""
    cells = {("sgd", "0.01"): (0.80, 0.95), ("sgd", "0.1"): (0.90, 0.85),
             ("adam", "0.001"): (0.95, 0.93), ("adam", "0.1"): (0.20, 0.20)}
    for (optimizer, lr), (val, test) in cells.items():
        for seed in (1, 2, 3):
            make_run(tmp_path, f"{optimizer}_{lr}_{seed}", ["experiment=optimizer_lr_grid", f"optimizer={optimizer}",
                     f"optimizer.lr={lr}", f"seed={seed}"], metrics(test + 0.01 * seed, val + 0.01 * seed), seed=seed)
    return tmp_path


def test_best_of_picks_each_optimizers_lr_on_validation_never_on_test(grid, capsys):
    code, err = run_entry("compare.py", [f"dir={grid}", "best_of.by=optimizer", "best_of.knob=optimizer.lr"], capsys,
                          stage="run")
    assert code == 0, err
    rows = {r["optimizer"]: r for r in json.loads((grid / "best_of_grid.json").read_text())}
    assert rows["sgd"]["optimizer.lr"] == "0.1" and rows["adam"]["optimizer.lr"] == "0.001"
    assert rows["sgd"]["grid"] == {"0.01": 0.82, "0.1": 0.92}  # every lr's mean best val acc, in numeric order
    assert rows["sgd"]["test_acc"] == pytest.approx(0.87) and rows["sgd"]["test_acc_std"] == pytest.approx(0.01)
    assert rows["sgd"]["seeds"] == [1, 2, 3]
    table = (grid / "best_of_grid.md").read_text()
    assert "| sgd | 0.01: 0.820, 0.1: 0.920 | 0.1 | 0.8700 ± 0.0100 (3 seeds) |" in table
    assert (grid / "best_of_grid_train_loss.png").read_bytes()[:8] == PNG
    assert not (grid / "comparison.md").exists()  # best_of reports instead of the comparison


def test_best_of_prints_its_table_and_breaks_ties_toward_the_smaller_value(tmp_path, capsys):
    for lr in ("0.1", "0.01", "1e-3"):  # one mean val acc for all three: the smallest lr wins
        make_run(tmp_path, f"lr={lr}", [f"optimizer.lr={lr}", "optimizer=adam"], metrics(0.5, 0.7))
    compare.best_of(tmp_path, "optimizer", "optimizer.lr")
    out = capsys.readouterr().out
    assert "| adam | 1e-3: 0.700, 0.01: 0.700, 0.1: 0.700 | 1e-3 | 0.5000 ± 0.0000 (1 seeds) |" in out
    assert "wrote " in out and out.count("best_of_grid") == 3


@pytest.mark.parametrize("argv, says", [
    (["best_of.by=activation"], "best_of.by='activation': no run under {dir} sets it; "
                                "valid (the keys the runs vary): optimizer, optimizer.lr"),
    (["best_of.by=optimizer", "best_of.knob=optimizer.momentum"], "best_of.knob='optimizer.momentum': no run under"),
    (["best_of.by=optimizer", "best_of.knob=optimizer"], "best_of.by and best_of.knob are both 'optimizer'"),
    (["best_of.by=optimizer", "best_of.knob=seed"], "best_of.knob='seed': the seeds are what each cell's mean"),
    (["best_of=optimizer"], "best_of='optimizer' is not valid; write best_of.by=<an option the sweep varies>"),
    (["best_of.color=red"], "best_of.color=red: best_of has no key 'color'; valid keys of best_of: by, knob"),
    (["best_of.by=optimizer", "dir={dir}/no_such_sweep"], "dir='{dir}/no_such_sweep' is not a directory"),
    (["best_of.by=optimizer", "dir={dir}/empty"], "no training runs under {dir}/empty (a run dir holds the .hydra/"),
])
def test_bad_best_of_input_is_one_line_exit_2_and_writes_nothing(grid, capsys, argv, says):
    (grid / "empty").mkdir()
    before = digest(grid)
    code, err = run_entry("compare.py", [f"dir={grid}", *(a.format(dir=grid) for a in argv)], capsys, stage="run")
    assert code == 2 and says.format(dir=grid) in one_line(err), err
    assert digest(grid) == before and not any((grid / "empty").iterdir())


@pytest.mark.parametrize("name", ["best_of_grid.md", "best_of_grid_train_loss.png"])
def test_best_of_refuses_to_write_through_a_link_and_writes_nothing(grid, tmp_path_factory, capsys, name):
    outside = tmp_path_factory.mktemp("outside") / "target.txt"
    outside.write_text("not the sweep's\n")
    (grid / name).symlink_to(outside)
    before = digest(grid)
    code, err = run_entry("compare.py", [f"dir={grid}", "best_of.by=optimizer"], capsys, stage="run")
    assert code == 2 and f"{grid / name} is a symbolic link" in one_line(err), err
    assert digest(grid) == before and outside.read_text() == "not the sweep's\n"
