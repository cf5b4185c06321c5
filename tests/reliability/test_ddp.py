"""A DDP run with 2 CPU processes (gloo) trains, syncs its metrics over the
whole splits, and writes one run dir (Lightning re-launches train.py for rank
1 with hydra.run.dir pointing at rank 0's dir and hydra.output_subdir=null)."""

from __future__ import annotations

import json

import pytest

from helpers import final_metrics, run_script

TEST_IMAGES = 360  # digits' fixed test split


# slow: two processes with gloo, about 24 s: run it after a change to training/ or reporting/ (README Tests)
@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_run_with_synced_metrics(tmp_path_factory):
    parent = tmp_path_factory.mktemp("ddp")
    run_dir = parent / "run"
    result = run_script("train.py", "experiment=smoke", "trainer.max_epochs=1", "trainer.limit_train_batches=4",
                        "trainer.enable_progress_bar=false", "trainer=ddp", "trainer.accelerator=cpu",
                        "trainer.devices=2", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in parent.iterdir()] == ["run"]  # rank 1 wrote into rank 0's dir, no other dir
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 1

    # the test accuracy is over all 360 images, not one rank's half: it equals a single-process evaluation
    evaluation = run_script("evaluate.py", f"ckpt_path={run_dir}", "trainer.accelerator=cpu",
                            f"hydra.run.dir={tmp_path_factory.mktemp('evaluate')}")
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert metrics["test/acc"] == pytest.approx(final_metrics(evaluation.stdout)["test/acc"], abs=1e-6)
    assert metrics["test/acc"] * TEST_IMAGES == pytest.approx(round(metrics["test/acc"] * TEST_IMAGES), abs=1e-3)
    assert final_metrics(result.stdout)["val/acc"] == metrics["val/acc"]
