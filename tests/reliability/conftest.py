"""A tiny finished training run shared by the reliability tests (read-only: copy it before changing it)."""

from __future__ import annotations

import pytest

from helpers import run_script
from inprocess import Canaries

# LeNet-5 on digits, one short epoch, bit-reproducible: ~5 s on a CPU
TINY = ["experiment=smoke", "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.enable_progress_bar=false",
        "trainer.deterministic=true", "seed=3"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    result = run_script("train.py", *TINY, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


@pytest.fixture(scope="session")
def tiny_args():
    """The tiny run's command line, to run it again (or a variant of it)."""
    return list(TINY)


@pytest.fixture(scope="session")
def unfinished_run(tmp_path_factory):
    """A tiny run planned without a run-length schedule (scheduler=none) and stopped after its first epoch,
    as a kill leaves it (no metrics.json): ``resume=<copy> trainer.max_epochs=2`` trains one more epoch.
    Read-only: copy it (``copy_run``) before changing it."""
    run_dir = tmp_path_factory.mktemp("unfinished") / "run"
    result = run_script("train.py", *TINY, "scheduler=none", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir / "metrics.json").unlink()
    return run_dir


@pytest.fixture
def canaries(tmp_path):
    return Canaries(tmp_path / "outside")
