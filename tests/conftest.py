"""Fixtures shared across the test rooms."""

from __future__ import annotations

import pytest

from helpers import run_script


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """One real training run on digits, shared by the end-to-end tests."""
    run_dir = tmp_path_factory.mktemp("digits_run")
    result = run_script(
        "train.py", "experiment=smoke", "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


@pytest.fixture(scope="session")
def cifar10_jpeg(tmp_path_factory):
    """All 60,000 real CIFAR-10 images of ../shared/data (JPEG copy), extracted once: (root, cache dir)."""
    import tarfile

    from helpers import SHARED_DATA

    archive = SHARED_DATA / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is not here (it sits in ../shared/data/ beside the checkout)")
    root = tmp_path_factory.mktemp("cifar10-jpeg")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root, tmp_path_factory.mktemp("cifar10-jpeg-cache")
