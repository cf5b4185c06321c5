"""Fixtures shared across the test rooms."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

if os.environ.get("PYTEST_XDIST_WORKER"):  # before anything imports torch: its OpenMP pool is sized once, at import
    # the cores shared among the workers, for torch here and the train.py processes tests start: two workers of two
    # threads each on 2 cores spin against each other (ResNet-56's 10,000 test images: 44 s instead of 17 s)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers)))

import pytest

from helpers import run_script

SCRATCH_FREE_BYTES = 4 << 30  # the suite writes about 1.5 GB of scratch (the extracted JPEG copy, checkpoints)


def memory_scratch() -> str | None:
    """/dev/shm where it is a tmpfs with room to spare: 60,000 JPEGs are extracted there in about 1 s instead of
    the 25 s of system time a virtual disk took here, and the runs' checkpoint writes (fsync) cost nothing."""
    try:
        with open("/proc/mounts") as table:
            mounts = [line.split() for line in table]
    except OSError:
        return None
    tmpfs = any(len(m) > 2 and m[1] == "/dev/shm" and m[2] == "tmpfs" for m in mounts)
    if not tmpfs or not os.access("/dev/shm", os.W_OK):
        return None
    return "/dev/shm" if shutil.disk_usage("/dev/shm").free > SCRATCH_FREE_BYTES else None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Every test's tmp_path in memory where the machine has a tmpfs (an explicit --basetemp wins); the xdist
    workers get a folder each inside it. Removed when the session ends."""
    if config.option.basetemp is None and not hasattr(config, "workerinput") and (where := memory_scratch()):
        config.option.basetemp = config.zoo_scratch = tempfile.mkdtemp(prefix="zoo-pytest-", dir=where)


def pytest_unconfigure(config):
    if getattr(config, "zoo_scratch", None):
        shutil.rmtree(config.zoo_scratch, ignore_errors=True)


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
    if shutil.which("tar"):  # 1 s on a tmpfs here; Python's tarfile took 8 s for the same 60,000 files
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(root)], check=True)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    return root, tmp_path_factory.mktemp("cifar10-jpeg-cache")
