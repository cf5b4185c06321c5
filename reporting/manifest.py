"""The run manifest: what a number depends on beyond its config.

Written as ``manifest.json`` into every run dir and copied into every weight
card, so that a published figure names the software, the hardware and the
commit it came from. Everything here is read, never guessed: a field that
cannot be read is ``null``.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# cpu_model, usable_cores: this module's API too
from core.hardware import cpu_has_bf16, cpu_model, usable_cores  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "numpy")


def git_state(repo: Path = REPO) -> dict:
    """The commit checked out and whether the tree differs from it (untracked files included)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def manifest(seed: int | None = None, argv: list[str] | None = None) -> dict:
    """Software, hardware, commit and command line of this process, as plain JSON values."""
    import torch  # the entry points have imported it by now; kept local so importing this module stays cheap

    cuda = torch.cuda.is_available()
    return {
        "command": shlex.join([Path(sys.executable).name, *(sys.argv if argv is None else argv)]),
        "seed": seed,
        "git": git_state(),
        "python": platform.python_version(),
        "packages": versions(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_bf16": cpu_has_bf16(),
        "cpu_cores_usable": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"],
    }
