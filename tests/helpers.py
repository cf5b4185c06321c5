"""Test helpers: running the entry points as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
# LeNet-5 on digits, two epochs of three batches: the runs of the tests' sweeps
SWEEP_TINY = ("experiment=smoke", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
              "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=False")


def run_script(script: str, *overrides: str, cwd: Path | None = None, timeout: int = 600,
               flags: tuple[str, ...] = (), env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python <flags> <script> <overrides>`` in a subprocess, with ``env`` added to the environment (it wins over
    the defaults here: OMP_NUM_THREADS as this process has it, else 2); output captured as text."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or "2",
           "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, *flags, str(ROOT / script), *overrides],
        cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def final_metrics(stdout: str) -> dict:
    """The metrics.json of the run dir that train.py / evaluate.py name on their last 'run dir:' line
    (what they print is a rounded table; the file keeps every metric unrounded)."""
    import json

    lines = [line for line in stdout.splitlines() if line.startswith("run dir: ")]
    assert lines, f"no 'run dir:' line in output:\n{stdout[-2000:]}"
    path = Path(lines[-1][len("run dir: "):])
    return json.loads((path if path.is_absolute() else ROOT / path).joinpath("metrics.json").read_text())


def host_reads():
    """A torch function mode that records every call which, on a GPU, reads a value back to the host and so
    waits for the device (``.item()``, ``float(t)``, ``bool(t)``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ops
    whose output size depends on the data, printing a tensor), with its call site, while ``.counting`` is
    true. On the CPU these cost nothing, which is why a test on the CPU must look for them by name. Tensors
    that stay on the host on a GPU too (Adam's step counters) cannot be told apart here: reads of them
    are free there."""
    import traceback

    import torch
    from torch.overrides import TorchFunctionMode

    reads = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "__complex__", "cpu", "numpy",
             "nonzero", "unique", "unique_consecutive", "masked_select", "__repr__", "__format__"}

    class HostReads(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.counting, self.calls = False, []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            bool_index = name == "__getitem__" and any(isinstance(a, torch.Tensor) and a.dtype == torch.bool
                                                       for a in args[1:2])
            to_cpu = name == "to" and "cpu" in [*args[1:], *(kwargs or {}).values()]  # .to("cpu"); not .to(root device)
            if self.counting and (name in reads or bool_index or to_cpu):
                frames = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename][-3:]
                self.calls.append((name, " <- ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}"
                                                     for f in reversed(frames))))
            return func(*args, **(kwargs or {}))

    return HostReads()


def image_folder(root: Path, classes=("cat", "dog"), per_class: int = 3, size: int = 12, suffix: str = ".jpg") -> Path:
    """A small image folder in torchvision's ImageFolder layout: ``per_class`` images of each class in ``train/`` and
    ``test/``, each a flat colour of its own (the class in red, the index in green)."""
    from PIL import Image

    for split in ("train", "test"):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (size, size), (40 * c, 10 * i, 90)).save(root / split / name / f"{i}{suffix}")
    return root
