"""Fixtures shared across the test rooms."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

if os.environ.get("PYTEST_XDIST_WORKER"):  # before anything imports torch: its OpenMP pool is sized once, at import
    # the cores shared among the workers, for torch here and the train.py processes tests start: two workers of two
    # threads each on 2 cores spin against each other (ResNet-56's 10,000 test images: 44 s instead of 17 s)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers)))

import pytest

from helpers import SWEEP_TINY, run_script

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
def made_once(tmp_path_factory):
    """``made_once(name, make, kept_as_made=True)``: the folder ``name`` made by ``make(folder)`` once for the
    whole session, whichever xdist worker asks first (the others wait for it, then reuse it), with what ``make``
    returned (a finished process: its returncode, stdout and stderr; nothing when there is no process). A
    training run that several test modules read is paid once, not once per worker (about 7 s of imports and
    set-up each here). Read-only: copy it before changing it. With ``kept_as_made``, a test that changed it
    anyway fails the session at its end, naming the folder (a shared run changed under another test's feet
    would fail that test instead, somewhere else)."""
    from inprocess import digest

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "made-once"
    shared.mkdir(exist_ok=True)
    kept: dict[Path, dict] = {}

    def made(name: str, make, kept_as_made: bool = True) -> tuple[Path, SimpleNamespace]:
        folder, record = shared / name, shared / f"{name}.json"
        with open(shared / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not record.is_file():
                shutil.rmtree(folder, ignore_errors=True)  # what a worker's failed attempt left
                result = make(folder) or SimpleNamespace(returncode=0, stdout="", stderr="")
                finished = {k: getattr(result, k) for k in ("returncode", "stdout", "stderr")}
                if finished["returncode"] != 0:  # every asker fails with the same output; the next one tries again
                    raise AssertionError(f"{name}: {finished['stderr'][-3000:]}")
                record.write_text(json.dumps({**finished, "digest": digest(folder) if kept_as_made else None}))
            finished = json.loads(record.read_text())
        if kept_as_made:
            kept[folder] = finished.pop("digest")
        return folder, SimpleNamespace(**{k: finished[k] for k in ("returncode", "stdout", "stderr")})

    yield made
    changed = [str(folder) for folder, before in kept.items() if digest(folder) != before]
    assert not changed, f"a test changed a shared run instead of a copy of it: {', '.join(changed)}"


@pytest.fixture(scope="session")
def digits_run(made_once):
    """One real training run on digits, shared by the end-to-end tests."""
    return made_once("digits_run", lambda run_dir: run_script(
        "train.py", "experiment=smoke", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"))


@pytest.fixture(scope="session")
def seed_sweep_runs(made_once):
    """One ``train.py -m`` process: two optimizers x two seeds (four runs, two cells), as ``<folder>/sweep``;
    read by the sweep and the TensorBoard tests (copy it before writing into it)."""
    folder, result = made_once("seed_sweep", lambda folder: run_script(
        "train.py", "-m", *SWEEP_TINY, "optimizer=sgd,adam", "seed=1,2", f"hydra.sweep.dir={folder / 'sweep'}"))
    return folder / "sweep", result


@pytest.fixture(scope="session")
def cifar10_jpeg(made_once):
    """All 60,000 real CIFAR-10 images of ../shared/data (JPEG copy), extracted once, and a cache dir shared by
    every test that reads them (the decoded tensors are written there once): (root, cache dir)."""
    import tarfile

    from helpers import SHARED_DATA

    archive = SHARED_DATA / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is not here (it sits in ../shared/data/ beside the checkout)")

    def extract(folder):
        (folder / "images").mkdir(parents=True)
        (folder / "cache").mkdir()
        if shutil.which("tar"):  # 1 s on a tmpfs here; Python's tarfile took 8 s for the same 60,000 files
            subprocess.run(["tar", "-xzf", str(archive), "-C", str(folder / "images")], check=True)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(folder / "images", filter="data")

    folder, _ = made_once("cifar10-jpeg", extract, kept_as_made=False)  # the cache fills as tests read it
    return folder / "images", folder / "cache"
