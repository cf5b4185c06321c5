"""Checkpoints are opened safely: a file that would run code when unpickled is
refused before it runs, a damaged one and one of another architecture get one
clear line, all with a non-zero exit."""

from __future__ import annotations

import os
import random
import shutil

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from helpers import ROOT
from inprocess import run_entry
from training.checkpoints import load_checkpoint


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


@pytest.fixture
def malicious(tmp_path):
    """A fake run dir whose checkpoint, once unpickled, creates ``marker``."""
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=smoke"]))
    (run_dir / "checkpoints").mkdir()
    path = run_dir / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"config": Payload(marker)}}, path)
    torch.load(path, weights_only=False)  # the control: an unsafe load does run it
    assert marker.exists()
    marker.unlink()
    return path, marker


@pytest.mark.parametrize("script,argument", [("evaluate.py", "ckpt_path"), ("train.py", "resume")])
def test_a_checkpoint_that_would_run_code_is_refused(malicious, script, argument, tmp_path, capsys):
    path, marker = malicious
    code, err = run_entry(script, [f"{argument}={path}", f"hydra.run.dir={tmp_path / 'out'}"], capsys, stage="run")
    assert code == 2
    line = one_error_line(err)
    assert str(path) in line and "refused" in line and "weights_only" in line
    assert not marker.exists()


def test_a_truncated_checkpoint_gets_one_line(tiny_run, tmp_path, capsys):
    real = (tiny_run[0] / "checkpoints" / "last.ckpt").read_bytes()
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(real[: len(real) // 2])
    code, err = run_entry("evaluate.py", [f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'out'}"], capsys,
                          stage="run")
    assert code == 2
    line = one_error_line(err)
    assert str(path) in line and "corrupted or truncated" in line


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped", "empty"])
def test_damaged_checkpoints_are_one_line_errors(tiny_run, tmp_path, damage):
    """Every kind of damage ends as a ValueError, which the entry points print as one line."""
    real = (tiny_run[0] / "checkpoints" / "last.ckpt").read_bytes()
    damaged = {"truncated": real[: len(real) // 2], "garbage": random.Random(0).randbytes(4096),
               "flipped": real[:100] + bytes(b ^ 0xFF for b in real[100:2000]) + real[2000:], "empty": b""}[damage]
    path = tmp_path / f"{damage}.ckpt"
    path.write_bytes(damaged)
    with pytest.raises(ValueError) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_resuming_with_another_architecture_names_expected_and_found(tiny_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    code, err = run_entry("train.py", [f"resume={run_dir}", "model=resnet20"], capsys, stage="run")
    assert code == 2
    line = one_error_line(err)
    assert "last.ckpt does not fit model=resnet20" in line
    assert "missing" in line and "unexpected" in line  # what the model expected and what the file holds
    # the failed resume must not rewrite the run's record: the next plain resume= would compose resnet20
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == overrides


def test_last_checkpoint_every_n_steps_knob_builds():
    """configs/callbacks/default.yaml: callbacks.last_checkpoint.every_n_train_steps=N is a documented knob."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose("train", overrides=["experiment=smoke", "callbacks.last_checkpoint.every_n_train_steps=5",
                                              "paths.output_dir=unused"])
    finally:
        GlobalHydra.instance().clear()
    callback = instantiate(cfg.callbacks.last_checkpoint)
    assert "'every_n_train_steps': 5" in callback.state_key  # Lightning's public view of its settings
