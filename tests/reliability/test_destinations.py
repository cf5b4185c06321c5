"""Issue 20, items 2, 5 and 7: a run dir, checkpoint or card never chooses where anything is written.

Output locations come from the command line and the run dir being resumed: a run dir's stored
overrides that name a location are ignored (one line says so), a stored model name becomes one plain
folder-name part, a stored data_dir is replaced by the command line's. A command that fails its checks
writes nothing into an existing run dir, and a second process into a run dir in use gets one line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from helpers import ROOT
from inprocess import copy_run, digest, one_line, run_entry


def add_overrides(run, *overrides: str) -> None:
    path = run / ".hydra" / "overrides.yaml"
    path.write_text(yaml.safe_dump([*yaml.safe_load(path.read_text()), *overrides]))


def test_resume_ignores_stored_overrides_that_name_where_to_write(unfinished_run, canaries, tmp_path,
                                                                  monkeypatch, capsys):
    """Item 2: paths.output_dir=, callbacks.*.dirpath=, logger.*.save_dir=, data.data_dir= in a run dir's
    overrides: ignored with one line; the resumed run writes into its own dir only."""
    monkeypatch.chdir(tmp_path)
    run = copy_run(unfinished_run, tmp_path / "run")
    elsewhere = canaries.root / "elsewhere"
    stored = [f"paths.output_dir={elsewhere}", f"callbacks.model_checkpoint.dirpath={elsewhere}/checkpoints",
              f"logger.tensorboard.save_dir={elsewhere}/tb", f"data.data_dir={elsewhere}/data"]
    add_overrides(run, *stored)
    code, err = run_entry("train.py", [f"resume={run}", "trainer.max_epochs=2"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and all(o in notes[0] for o in stored) and "ignored" in notes[0], err[-2000:]
    assert not elsewhere.exists() and canaries.untouched()
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 1
    assert (run / "metrics.json").is_file()


def test_a_location_typed_again_on_the_command_line_is_the_user_s(unfinished_run, tmp_path, capsys):
    from reporting.trust import drop_stored_locations

    stored = ["experiment=smoke", f"paths.data_dir={tmp_path}", "callbacks.model_checkpoint.dirpath=/x"]
    kept = drop_stored_locations(stored, [f"paths.data_dir={tmp_path}"], "overrides.yaml")
    assert kept == ["experiment=smoke", f"paths.data_dir={tmp_path}"]
    assert "callbacks.model_checkpoint.dirpath=/x" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["/../../../../escaped", "${unique_dir:CANARY/made}", "${oc.env:HOME}", "..", ""])
def test_evaluate_names_its_run_dir_from_a_sanitized_model_name(name, tiny_run, canaries, tmp_path,
                                                                monkeypatch, capsys):
    """Item 5: the stored model.name of .hydra/config.yaml is one plain name part of the run dir, never a path
    nor an interpolation (it sent metrics, figures, events and log anywhere, or made a dir anywhere)."""
    monkeypatch.chdir(tmp_path)
    run = copy_run(tiny_run[0], tmp_path / "run")
    config = run / ".hydra" / "config.yaml"
    hostile = name.replace("CANARY", str(canaries.root))
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "model": {"name": hostile}}))
    code, err = run_entry("evaluate.py", [f"ckpt_path={run}"], capsys, stage="run")  # run: an empty run dir is removed
    assert code in (0, None), err[-3000:]
    made = list((tmp_path / "outputs").iterdir())
    assert len(made) == 1 and re.fullmatch(r"evaluate_[A-Za-z0-9_.-]+_[\d-]+_[\d-]+", made[0].name), made
    assert made[0].is_dir() and (made[0] / "metrics.json").is_file() and not made[0].name.startswith("evaluate_._")
    assert canaries.untouched() and not (canaries.root / "made").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs", "outside", "run"]


def test_evaluate_takes_data_dir_from_the_command_line_never_from_the_checkpoint(tmp_path):
    """Item 5: a stored data_dir chose where evaluate wrote its image cache or tried a download."""
    from reporting.trust import evaluation_data

    stored = {"data": {"_target_": "datamodules.DigitsDataModule", "data_dir": str(tmp_path / "elsewhere"),
                       "batch_size": 8}}
    cfg = OmegaConf.create({"data": {"data_dir": None, "root": None, "batch_size": None},
                            "paths": {"data_dir": "data"}})
    assert evaluation_data(cfg, stored, "x.ckpt") == {"data_dir": "data"}
    cfg.data.data_dir = "/mine"
    assert evaluation_data(cfg, stored, "x.ckpt") == {"data_dir": "/mine"}


@pytest.mark.parametrize("bad", [["+optimizer.lrr=0.1"], ["performance.compile_mode=bogus"]])
def test_a_command_that_fails_its_checks_writes_nothing_into_an_earlier_run(bad, tiny_run, capsys):
    """Item 7: these rewrote the earlier run's .hydra/*.yaml, manifest.json and train.log, then ended in a traceback."""
    run_dir, _ = tiny_run
    before = digest(run_dir)
    code, err = run_entry("train.py", ["experiment=smoke", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                                       *bad, f"hydra.run.dir={run_dir}"], capsys, stage="run")
    assert code == 2 and bad[0].split("=")[0].lstrip("+") in one_line(err)
    assert digest(run_dir) == before


def test_a_second_process_into_a_run_dir_in_use_gets_one_line(tiny_run, tmp_path, capsys):
    """Item 7: two runs given the same hydra.run.dir interleaved in it without a word."""
    run = copy_run(tiny_run[0], tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from core.files import hold_run_dir; "
                               f"hold_run_dir({str(run)!r}); print('held', flush=True); sys.stdin.read()"],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = digest(run)
        code, err = run_entry("train.py", ["experiment=smoke", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                                           f"hydra.run.dir={run}"], capsys, stage="run")
        assert code == 2 and "in use by another run" in one_line(err) and str(holder.pid) in one_line(err)
        assert digest(run) == before
    finally:
        holder.communicate("", timeout=60)
