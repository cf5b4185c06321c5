"""Issue 20, item 6: every write survives a kill or a full disk.

Checkpoints were copied from TMPDIR when it was another file system (a kill left last.ckpt at half
its size); a full disk gave a 60-line traceback, no metrics.json and a truncated checkpoint with a
valid-looking name. Now every write is a temporary file in the destination's own folder, fsync'ed and
renamed; a failed write is one line naming the file and the free space, metrics.json says failed, the
earlier checkpoints stay as they were, and resume= falls back to the newest intact checkpoint."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from helpers import ROOT
from inprocess import copy_run, digest, one_line, run_entry
from training.checkpoints import RunCheckpointIO, resume_target


def checkpoints(run) -> dict:
    return {k: v for k, v in digest(run).items() if k.startswith("checkpoints/")}


def test_a_write_failing_half_way_is_one_line_and_leaves_the_earlier_checkpoints(unfinished_run, tmp_path, monkeypatch,
                                                                                  capsys):
    """Fault injection (runs everywhere): the next checkpoint's write fails half-way with a full disk."""
    import training.checkpoints

    run = copy_run(unfinished_run, tmp_path / "run")
    before = checkpoints(run)
    real = torch.save

    def half_then_full(obj, handle):
        real(obj, handle)
        handle.seek(handle.tell() // 2)
        handle.truncate()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(training.checkpoints.torch, "save", half_then_full)
    code, err = run_entry("train.py", [f"resume={run}", "trainer.max_epochs=2"], capsys, stage="run")
    line = one_line(err)
    assert code == 2 and "no space left on the device writing" in line and ".ckpt" in line and "free" in line, line
    assert checkpoints(run) == before  # nothing replaced, nothing partial under a final name, no temporary left
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"


def test_a_full_disk_is_one_line_naming_the_file_and_the_free_space(unfinished_run, tmpfs, tmp_path,
                                                                    monkeypatch, capsys):
    """A real full disk: the run on a tmpfs with room for its files and the next epoch's logs,
    not its next checkpoint."""
    point = tmpfs.mount(64 * 1024)
    run = copy_run(unfinished_run, point / "run")
    used_kib = shutil.disk_usage(point).used // 1024
    tmpfs.resize(point, used_kib + 300)  # a checkpoint takes 760 KiB
    before = checkpoints(run)
    monkeypatch.chdir(tmp_path)
    code, err = run_entry("train.py", [f"resume={run}", "trainer.max_epochs=2"], capsys, stage="run")
    line = one_line(err)
    assert (code == 2 and f"no space left on the device writing {run / 'checkpoints'}" in line
            and "KiB free" in line), line
    assert checkpoints(run) == before
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"


def test_a_checkpoint_is_written_in_its_own_folder_whatever_tmpdir_is(tiny_run, tmpfs, tmp_path, monkeypatch):
    """TMPDIR on another file system (a tmpfs here, where the test may mount one): the temporary file is made
    beside the checkpoint and renamed there; nothing is copied across file systems."""
    try:
        elsewhere = tmpfs.mount(1024)
    except pytest.skip.Exception:
        elsewhere = tmp_path / "tmpdir"  # not another file system, but still not the checkpoint's folder
        elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr("tempfile.tempdir", None)
    renames = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((a, b)), real(a, b))[1])
    folder = tmp_path / "run" / "checkpoints"
    checkpoint = torch.load(tiny_run[0] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    RunCheckpointIO([folder]).save_checkpoint(checkpoint, folder / "last.ckpt")
    assert [os.path.dirname(a) for a, _ in renames] == [str(folder)] and not list(elsewhere.iterdir())
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == checkpoint["global_step"]


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from core.files import atomic_write

def half_then_killed(handle):
    handle.write(b"new" * 100000)
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)

atomic_write(Path(sys.argv[1]), half_then_killed)
"""


def test_a_kill_in_the_middle_of_a_write_leaves_the_old_file_and_no_partial_under_a_final_name(tiny_run, tmp_path,
                                                                                               caplog):
    run = copy_run(tiny_run[0], tmp_path / "run")
    before = checkpoints(run)
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(run / "checkpoints" / "last.ckpt")], cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL
    after = checkpoints(run)
    partial = [name for name in after if name not in before]
    assert {k: after[k] for k in before} == before and len(partial) == 1 and partial[0].endswith(".partial")
    path, _, checkpoint = resume_target(run)  # the partial file is never taken for a checkpoint
    assert path.name == "last.ckpt" and checkpoint["epoch"] == 0


def test_resume_falls_back_to_the_newest_intact_checkpoint_and_says_which(unfinished_run, tmp_path, capsys, caplog):
    run = copy_run(unfinished_run, tmp_path / "run")
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # what a copy killed half-way left
    with caplog.at_level(logging.WARNING, logger="training.checkpoints"):
        code, err = run_entry("train.py", [f"resume={run}", "trainer.max_epochs=2"], capsys)
    assert code in (0, None), err[-3000:]
    lines = [r.getMessage() for r in caplog.records if "newest intact" in r.getMessage()]
    intact = next(run.glob("checkpoints/epoch*.ckpt")).name
    assert len(lines) == 1 and "last.ckpt is not readable" in lines[0] and f"using {intact}" in lines[0], lines
