"""A tiny finished training run shared by the reliability tests (read-only: copy it before changing it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from inprocess import Canaries, run_entry_output

# LeNet-5 on digits, one short epoch, bit-reproducible: ~5 s on a CPU
TINY = ["experiment=smoke", "trainer.max_epochs=1", "trainer.limit_train_batches=4",
        "trainer.enable_progress_bar=false", "trainer.deterministic=true", "seed=3"]


def train_here(*argv: str) -> SimpleNamespace:
    """train.py in this process (no 7 s of imports), as a finished process would report it."""
    code, out, err = run_entry_output("train.py", list(argv))
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


@pytest.fixture(scope="session")
def tiny_run(made_once):
    folder, result = made_once("tiny", lambda folder: train_here(*TINY, f"hydra.run.dir={folder / 'run'}"))
    return folder / "run", result


@pytest.fixture(scope="session")
def tiny_args():
    """The tiny run's command line, to run it again (or a variant of it)."""
    return list(TINY)


@pytest.fixture(scope="session")
def unfinished_run(made_once):
    """A tiny run planned without a run-length schedule (scheduler=none) and stopped after its first epoch,
    as a kill leaves it (no metrics.json): ``resume=<copy> trainer.max_epochs=2`` trains one more epoch.
    Read-only: copy it (``copy_run``) before changing it."""
    def stopped_after_its_first_epoch(folder):
        result = train_here(*TINY, "scheduler=none", f"hydra.run.dir={folder / 'run'}")
        if result.returncode == 0:
            (folder / "run" / "metrics.json").unlink()
        return result

    folder, _ = made_once("unfinished", stopped_after_its_first_epoch)
    return folder / "run"


@pytest.fixture
def canaries(tmp_path):
    return Canaries(tmp_path / "outside")


class Tmpfs:
    """Small tmpfs mounts of a test's own (a full disk, a read-only or another file system), unmounted after it;
    where this process may not mount one (not root, no mount(8)), the test is skipped with the reason."""

    def __init__(self, folder) -> None:
        self.folder, self.mounted = folder, []

    def mount(self, size_kib: int, read_only: bool = False):
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("needs root and mount(8) to make a small tmpfs (a full disk, a read-only or "
                        "another file system)")
        point = self.folder / f"tmpfs{len(self.mounted)}"
        point.mkdir()
        options = f"size={size_kib}k" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        self.mounted.append(point)
        return point

    @staticmethod
    def resize(point, size_kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size_kib}k", str(point)], check=True, capture_output=True)

    def unmount_all(self) -> None:
        for point in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    mounts = Tmpfs(tmp_path)
    yield mounts
    mounts.unmount_all()


@pytest.fixture
def shipped_card(tmp_path):
    """A copy of the shipped LeNet-5 CIFAR-10 weights and card in ``<tmp>/weights/``: the card's path."""
    from helpers import ROOT

    folder = tmp_path / "weights"
    folder.mkdir()
    for suffix in (".pth", ".json"):
        shutil.copy(ROOT / "weights" / f"lenet5-cifar10{suffix}", folder)
    return folder / "lenet5-cifar10.json"
