"""Issue 20, items 11 and 12: what still ended in a traceback, or was accepted silently, is one line.

Each case builds its bad input, expects exit 2 and one line naming the value, and that an earlier run
dir it was aimed at (and every canary outside it) is byte-identical; a checkpoint with NaN weights is
evaluated with one warning line."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from inprocess import copy_run, digest, one_line, run_entry


@pytest.mark.parametrize("field,value,says", [
    ("file", "../x.pth", "its file is '../x.pth'"),
    ("file", 123, "its file is 123"),
    ("file", "ABSOLUTE", "not a path"),
    ("model", "model", "its model is 'model'"),
    ("sha256", "abc", "its sha256 is 'abc'"),
])
def test_a_card_naming_a_path_or_holding_a_wrong_type_is_one_line(field, value, says, shipped_card, canaries, tmp_path,
                                                                   monkeypatch, capsys):
    """Item 11: card fields "file": "../x.pth", 123, an absolute file, a string "model"."""
    monkeypatch.chdir(tmp_path)
    card = shipped_card
    shutil.copy(card.with_suffix(".pth"), canaries.root / "x.pth")  # what ../x.pth would reach (if it were beside)
    canaries.before = digest(canaries.root)
    data = json.loads(card.read_text())
    data[field] = str(canaries.root / "x.pth") if value == "ABSOLUTE" else value
    card.write_text(json.dumps(data))
    before = digest(card.parent)
    code, err = run_entry("evaluate.py", [f"weights={card}"], capsys)
    assert code == 2 and says in one_line(err) and str(card) in one_line(err), err[-2000:]
    assert digest(card.parent) == before and canaries.untouched()


def test_compare_tabulates_the_sweep_when_one_metrics_json_holds_an_out_of_range_number(tmp_path, capsys):
    """Item 11: one out-of-range number (an integer of 400 digits) took the table of the whole sweep down."""
    import compare

    for i in range(3):
        hydra = tmp_path / f"seed={i}" / ".hydra"
        hydra.mkdir(parents=True)
        (hydra / "config.yaml").write_text(f"task_name: train\nseed: {i}\nmodel: {{name: lenet5}}\n")
        (hydra / "overrides.yaml").write_text(f"- seed={i}\n")
        params = "1" + "0" * 400 if i == 1 else "61706"
        (tmp_path / f"seed={i}" / "metrics.json").write_text(f'{{"test/acc": 0.{5 + i}, "params": {params}, '
                                                             '"status": "completed"}')
    runs = {r["run"]: r for r in compare.compare(tmp_path, group=False)}
    assert (runs["seed=1"]["status"] == "unreadable"
            and "params=an integer of 401 digits is out of range" in runs["seed=1"]["error"])
    assert runs["seed=0"]["test_acc"] == 0.5 and runs["seed=2"]["params"] == 61706
    assert "| seed=2 | lenet5 | 2 | completed | 61.7 k |" in (tmp_path / "comparison.md").read_text()


TRAIN_CASES = [
    (["model="], "model=: no model option given; valid: alexnet"),  # item 11
    (["model=null"], "model=null: this group cannot be left out"),
    (["resume=/runs/optimizer=sgd,seed=1"], "a value holding '=' or ',' (a sweep run's dir) is quoted for Hydra"),
    (["data.data_dir=${oc.env:NOPE}"], "data.data_dir='${oc.env:NOPE}' does not resolve"),
    (["+trainer.foo=1"], "+trainer.foo=1: lightning.Trainer takes no argument 'foo'"),
    (["+optimizer.lrr=0.1"], "torch.optim.Adam takes no argument 'lrr' (did you mean lr?)"),
    (["trainer.limit_train_batches=0"], "trainer.limit_train_batches=0 is not valid"),  # item 12
    (["performance.compile_backend=nope"], "performance.compile_backend='nope' is not valid"),
    (["performance.compile_mode=bogus"], "performance.compile_mode='bogus' is not valid"),
    (["optimized_metric=nope"], "optimized_metric='nope' is not valid: it must be one of val/acc_best"),
]


@pytest.mark.parametrize("overrides,says", TRAIN_CASES, ids=[" ".join(o) for o, _ in TRAIN_CASES])
def test_train_refuses_with_one_line_and_the_earlier_run_stays_as_it_was(overrides, says, tiny_run, capsys):
    run_dir, _ = tiny_run
    before = digest(run_dir)
    code, err = run_entry("train.py",
                          ["experiment=smoke", "trainer.max_epochs=1", *overrides, f"hydra.run.dir={run_dir}"],
                          capsys, stage="run")
    assert code == 2 and says in one_line(err), err[-2000:]
    assert digest(run_dir) == before


def test_a_run_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("not a folder\n")
    code, err = run_entry("train.py", ["experiment=smoke", f"hydra.run.dir={target}"], capsys, stage="run")
    assert code == 2 and f"run dir {target} is a file, not a folder" in one_line(err)
    assert target.read_text() == "not a folder\n"


def test_a_read_only_output_dir_is_one_line(tmpfs, capsys):
    point = tmpfs.mount(1024, read_only=True)
    code, err = run_entry("train.py", ["experiment=smoke", f"hydra.run.dir={point / 'run'}"], capsys, stage="run")
    assert code == 2 and "read-only file system" in one_line(err) and str(point) in one_line(err)


def test_the_default_run_dir_in_a_read_only_working_dir_is_one_line(tmpfs, monkeypatch, capsys):
    monkeypatch.chdir(tmpfs.mount(1024, read_only=True))
    code, err = run_entry("train.py", ["experiment=smoke"], capsys, stage="run")
    assert code == 2 and "cannot create the run dir outputs/" in one_line(err), err[-2000:]


@pytest.mark.parametrize("argv,says", [
    (["threads=0"], "threads=0 is not valid"), (["threads=abc"], "threads='abc' is not valid"),
    (["batch_sizes=[0]"], "batch_sizes=[0] is not valid"), (["batch_sizes=128"], "batch_sizes=128 is not valid"),
    (["device=tpu"], "device='tpu' is not valid: it must be auto, cpu, cuda"),
    (["image_size=0"], "image_size=0 is not valid"),
])
def test_benchmark_refuses_bad_settings_with_one_line(argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_entry("benchmark.py", ["quick=true", *argv], capsys, stage="run")
    assert code == 2 and says in one_line(err)
    assert not (tmp_path / "outputs").exists()


def damaged_checkpoint(tiny_run, tmp_path, damage: str):
    run = copy_run(tiny_run[0], tmp_path / "run")
    for path in run.glob("checkpoints/*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        name = next(k for k in checkpoint["state_dict"] if k.endswith("weight"))
        if damage == "shape":
            checkpoint["state_dict"][name] = torch.zeros(3, 3)
        else:
            checkpoint["state_dict"][name] = torch.full_like(checkpoint["state_dict"][name], float("nan"))
        torch.save(checkpoint, path)
    return run, name


def test_evaluate_a_checkpoint_whose_weights_do_not_fit_its_model_is_one_line(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run, name = damaged_checkpoint(tiny_run, tmp_path, "shape")
    code, err = run_entry("evaluate.py", [f"ckpt_path={run}"], capsys)
    assert code == 2 and f"first: {name} is (3, 3) in the checkpoint" in one_line(err)


def test_evaluate_a_checkpoint_with_nan_weights_warns_in_one_line(tiny_run, tmp_path, monkeypatch, capsys, caplog):
    """Item 12: evaluated without a warning; now one warning line, and the evaluation is reported as asked."""
    monkeypatch.chdir(tmp_path)
    run, name = damaged_checkpoint(tiny_run, tmp_path, "nan")
    with caplog.at_level(logging.WARNING, logger="training.checkpoints"):
        code, err = run_entry("evaluate.py", [f"ckpt_path={run}"], capsys, stage="run")
    assert code in (0, None), err[-2000:]
    lines = [r.getMessage() for r in caplog.records if "non-finite weights" in r.getMessage()]
    assert len(lines) == 1 and name in lines[0] and "predictions mean nothing" in lines[0]


@pytest.mark.parametrize("argv,says", [
    (["visualize=maybe"], "visualize='maybe' is not valid: it must be true or false"),
    (["data.root=/some/images"], "data.root='/some/images':"),
])
def test_evaluate_refuses_with_one_line(argv, says, tiny_run, tmp_path, monkeypatch, capsys):
    """Item 12: visualize=maybe was taken as false; data.root was ignored for a checkpoint trained on digits."""
    monkeypatch.chdir(tmp_path)
    code, err = run_entry("evaluate.py", [f"ckpt_path={tiny_run[0]}", *argv], capsys)
    assert code == 2 and says in one_line(err), err[-2000:]
    if "root" in argv[0]:
        assert "trained on data=digits, which has no root" in one_line(err)
