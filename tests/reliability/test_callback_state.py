"""Issue 20, item 1: a checkpoint's callback state never makes Lightning delete a file outside its run.

A checkpoint that loads with weights_only=True still carries ModelCheckpoint's state; Lightning deletes
the files it names (``best_model_path``, ``kth_best_model_path``, ``last_model_path``, a
``best_k_models`` key) at its next save. training/checkpoints.py's RunCheckpointIO checks that state as
the checkpoint is loaded, before Lightning sees it: a state naming a path outside the run's own
checkpoint dir is dropped, with one line, and a delete outside that dir is refused anyway."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from inprocess import copy_run, digest, run_entry
from training.checkpoints import RunCheckpointIO

KEYS = ("best_model_path", "kth_best_model_path", "last_model_path", "best_k_models", "dirpath")


def path_form(form: str, target, cwd) -> str:
    """``target`` written as a hostile checkpoint would: a URL, an absolute path, or a path that starts
    inside the run's checkpoint dir and climbs out of it with ``..``, relative to the working dir."""
    if form == "local://":
        return f"local://{target}"
    if form == "absolute":
        return str(target)
    return f"run/checkpoints/../../{target.relative_to(cwd)}"


def states(checkpoint: dict) -> list[dict]:
    return [state for name, state in checkpoint["callbacks"].items() if name.startswith("ModelCheckpoint")]


def rebase(checkpoint_path, source, run) -> None:
    """The copied run's ModelCheckpoint paths moved from ``source`` to ``run``: as if it had been trained there."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    moved = lambda path: path.replace(str(source), str(run)) if isinstance(path, str) else path  # noqa: E731
    for state in states(checkpoint):
        for key in ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path"):
            state[key] = moved(state[key])
        state["best_k_models"] = {moved(path): score for path, score in state["best_k_models"].items()}
    torch.save(checkpoint, checkpoint_path)


def plant(checkpoint_path, key: str, value: str) -> None:
    """Every ModelCheckpoint state of the checkpoint gets ``key`` = ``value`` (for best_k_models: a key)."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    assert len(states(checkpoint)) == 2  # the best checkpoint's and last.ckpt's
    for state in states(checkpoint):
        state[key] = {**state[key], value: torch.tensor(0.5)} if key == "best_k_models" else value
    torch.save(checkpoint, checkpoint_path)


def copy(source, target, only_last: bool = False):
    """A copy of a run (or of its last.ckpt alone), its checkpoint state rebased on the copy's own dir."""
    if only_last:
        (target / "checkpoints").mkdir(parents=True)
        shutil.copy(source / "checkpoints" / "last.ckpt", target / "checkpoints")
        run = target
    else:
        run = copy_run(source, target)
    for path in run.glob("checkpoints/*.ckpt"):
        rebase(path, source, run)
    return run


@pytest.mark.parametrize("kind", ["file", "folder"])
@pytest.mark.parametrize("form", ["local://", "absolute", "relative .."])
@pytest.mark.parametrize("key", KEYS)
def test_a_state_naming_a_path_outside_the_run_is_dropped_and_nothing_is_deleted(
        key, form, kind, tiny_run, canaries, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    run = copy(tiny_run[0], tmp_path / "run", only_last=True)
    target = canaries.file if kind == "file" else canaries.folder
    value = path_form(form, target, tmp_path)
    plant(run / "checkpoints" / "last.ckpt", key, value)
    io = RunCheckpointIO([run / "checkpoints"])
    with caplog.at_level(logging.WARNING, logger="training.checkpoints"):
        loaded = io.load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert not [name for name in loaded["callbacks"] if name.startswith("ModelCheckpoint")]  # both dropped
    assert any(name.startswith("RNGStates") for name in loaded["callbacks"])  # the others are kept
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) == 2 and key in lines[0] and "nothing it names is deleted" in lines[0], lines
    io.remove_checkpoint(value)  # the second line: a delete outside the run's checkpoint dir is refused
    assert canaries.untouched()


def test_the_control_lightnings_own_checkpoint_io_deletes_what_a_state_names(canaries, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    TorchCheckpointIO().remove_checkpoint(f"local://{canaries.folder}")
    assert not canaries.folder.exists()  # what resume= did before: a whole tree gone


def test_a_state_naming_only_the_run_s_own_checkpoints_is_kept_and_they_are_replaced(tiny_run, tmp_path, caplog):
    run = copy(tiny_run[0], tmp_path / "run")
    io = RunCheckpointIO([run / "checkpoints"])
    with caplog.at_level(logging.WARNING, logger="training.checkpoints"):
        loaded = io.load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert len(states(loaded)) == 2 and not caplog.records  # the same state the parametrized cases plant into
    best = next(run.glob("checkpoints/epoch*.ckpt"))
    io.remove_checkpoint(str(best))  # a file of its own dir: deleted as Lightning asks
    assert not best.exists()


def test_resume_with_every_key_hostile_trains_on_and_deletes_nothing(unfinished_run, canaries, tmp_path, monkeypatch,
                                                                     capsys, caplog):
    """The whole path: train.py resume= with each key naming a canary in another form; the run goes on."""
    monkeypatch.chdir(tmp_path)
    run = copy(unfinished_run, tmp_path / "run")
    second = canaries.root / "second.txt"
    second.write_text("another file outside the run\n")
    canaries.before = digest(canaries.root)
    for path in run.glob("checkpoints/*.ckpt"):
        plant(path, "best_model_path", f"local://{canaries.folder}")
        plant(path, "last_model_path", f"run/checkpoints/../../{canaries.file.relative_to(tmp_path)}")
        plant(path, "kth_best_model_path", str(second))
        plant(path, "best_k_models", str(canaries.folder))
    with caplog.at_level(logging.WARNING, logger="training.checkpoints"):
        code, err = run_entry("train.py", [f"resume={run}", "trainer.max_epochs=2"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    assert canaries.untouched()
    assert any("dropped" in r.getMessage() for r in caplog.records)
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 1  # it trained its second epoch
