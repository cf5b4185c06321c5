"""Fixtures shared across the test rooms."""

from __future__ import annotations

import pytest

from helpers import run_script


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """One real training run on digits, shared by the end-to-end tests."""
    run_dir = tmp_path_factory.mktemp("digits_run")
    result = run_script(
        "train.py", "experiment=smoke", "trainer.max_epochs=6", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result
