"""A run killed with SIGKILL mid-epoch and resumed ends where an uninterrupted run ends."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import ROOT
from inprocess import one_line, run_entry, run_entry_output

COMMON = ["experiment=smoke", "trainer.max_epochs=5", "trainer.deterministic=true", "data.batch_size=16",
          "model.dropout=0.3", "data.augment=crop", "trainer.enable_progress_bar=false", "seed=7",
          "+trainer.max_steps=100000"]  # with max_steps, Lightning resumes "on epoch end" and replays the end's hooks
# the thread count of all three runs (the whole, the killed, the resumed): another count sums in another order, so the
# runs would part in the last bits; pinned, whatever OMP_NUM_THREADS the suite runs with
THREADS = "1"


def loss_steps(run_dir) -> list[int]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.step for e in events.Scalars("watch/loss_step")]  # train/loss_step (training/loggers.py)


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@contextlib.contextmanager
def pinned_threads():
    """This process's torch and OMP_NUM_THREADS (performance.threads=null: a fit takes it) at THREADS, as the killed
    run's process has them; restored after."""
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = THREADS
    torch.set_num_threads(int(THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if omp is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = omp


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The whole run, in this process (the killed one below is a process of its own: it must be killed)."""
    run_dir = tmp_path_factory.mktemp("whole")
    with pinned_threads():
        code, _, err = run_entry_output("train.py", [*COMMON, f"hydra.run.dir={run_dir}"])
    assert code in (0, None), err[-3000:]
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def kill_mid_epoch(run_dir, step: int) -> None:
    """Run train.py and have it SIGKILL itself at optimizer step ``step`` (see crash.py)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": THREADS,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.run([sys.executable, str(ROOT / "train.py"), *COMMON, f"hydra.run.dir={run_dir}",
                              "+callbacks.crash._target_=crash.SigkillAt", f"+callbacks.crash.step={step}"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]


def test_killed_and_resumed_run_matches_the_uninterrupted_one(uninterrupted, tmp_path, capsys):
    whole_dir, whole_metrics = uninterrupted
    whole_ckpt = torch.load(whole_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    steps_per_epoch = whole_ckpt["global_step"] // 5
    run_dir = tmp_path / "killed"
    kill_mid_epoch(run_dir, step=2 * steps_per_epoch + steps_per_epoch // 2)  # halfway through the third epoch
    assert not (run_dir / "metrics.json").exists()
    killed_at = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert killed_at["global_step"] == 2 * steps_per_epoch  # the last epoch end before the kill
    # the run dir names code (the crash callback's _target_): a run dir handed to resume= may not
    code, err = run_entry("train.py", [f"resume={run_dir}"], capsys)  # in this process: the check, not the run
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert "callbacks.crash._target_" in one_line(err) and one_line(err) == err.strip().splitlines()[-1]
    overrides = run_dir / ".hydra" / "overrides.yaml"  # so the test takes its crash callback out of the run's files
    overrides.write_text(yaml.safe_dump([o for o in yaml.safe_load(overrides.read_text()) if "crash" not in o]))
    for path in (run_dir / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        del checkpoint["hyper_parameters"]["config"]["callbacks"]["crash"]
        torch.save(checkpoint, path)
    with pinned_threads():  # resumed in this process, with the threads the killed and the whole run had
        code, err = run_entry("train.py", [f"resume={run_dir}"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    resumed_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert resumed_metrics["test/acc"] == pytest.approx(whole_metrics["test/acc"], abs=1e-9)
    resumed_ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (resumed_ckpt["epoch"], resumed_ckpt["global_step"]) == (whole_ckpt["epoch"], whole_ckpt["global_step"])
    resumed, whole = weights(run_dir), weights(whole_dir)
    assert resumed.keys() == whole.keys()
    for key in whole:
        assert torch.allclose(resumed[key].float(), whole[key].float(), atol=1e-6), key
    # TensorBoard shows each step once: what the killed run logged after its checkpoint is dropped, then logged again
    steps = loss_steps(run_dir)
    assert steps == sorted(set(steps)) and max(steps) > killed_at["global_step"], steps
    assert len(steps) == len(loss_steps(whole_dir)), (steps, loss_steps(whole_dir))
    written = json.loads((run_dir / "metrics.json").read_text())  # throughput: the resumed segment's steps in its time
    segment = whole_ckpt["global_step"] - killed_at["global_step"]
    assert written["train_images_per_s"] * written["wall_time_s"] / 16 == pytest.approx(segment, rel=0.01)


def test_resume_without_a_checkpoint_is_an_error_not_a_fresh_start(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    code, err = run_entry("train.py", [f"resume={tmp_path}"], capsys)
    assert code == 2
    line = one_line(err)
    assert "no checkpoint to resume from" in line and "refusing to start from scratch" in line
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints"] and not any((tmp_path / "checkpoints").iterdir())
