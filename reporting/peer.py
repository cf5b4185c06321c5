"""The peer, on the same data and GPU: airbench94 (Keller Jordan, PyPI ``airbench`` 0.1.8; Jordan 2024,
"94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498), a known recipe whose published
figures are 94.01 % mean test accuracy with test-time augmentation (n = 1000 runs) in 3.83 s on one
A100, on the original lossless CIFAR-10. Run on the zoo's own copy of the images, its accuracy there is
the measured cost of that copy for a known recipe, and its time the speed anchor for the speedrun.

airbench reads ``cifar10/train.pt`` and ``cifar10/test.pt`` under its working directory (its
``CifarLoader('cifar10', ...)``; it downloads CIFAR-10 only when they are missing), each a dict
``{"images": uint8 (N, 32, 32, 3), "labels": int64 (N,), "classes": [class names]}`` (its utils.py).
``write_airbench_data`` writes them from the decoded image folder, so that the peer trains on exactly the
images the zoo trains on: all 50,000 training images (airbench holds none out) and the 10,000 test images.

The GPU window runs airbench as its README does (``command``: ``python -c "import airbench;
airbench.warmup94(); airbench.train94()"``, here ``runs`` times after the warm-up) in the folder that
holds ``cifar10/``, and reads its own table back (``parse``): per run the test accuracy with its
test-time augmentation (``tta_val_acc``, its published figure), without it (``val_acc``), and its own
clock (``total_time_seconds``: CUDA events around the whitening, the training and the final
evaluation, as published). Nothing here imports airbench: it runs only in that process, on CUDA.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

PUBLISHED = {"tta_acc": 0.9401, "seconds": 3.83, "hardware": "one NVIDIA A100",
             "data": "CIFAR-10 (the lossless originals)",
             "source": "airbench 0.1.8 README: airbench94.py, mean of 1000 runs"}


def write_airbench_data(folder: Path, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                        classes: list[str]) -> list[Path]:
    """``train.pt`` and ``test.pt`` in airbench's layout from uint8 (N, 3, 32, 32) images and their labels."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for split, (images, labels) in splits.items():
        if images.dtype != torch.uint8 or images.shape[1:] != (3, 32, 32):
            raise ValueError(f"airbench needs uint8 32x32 RGB images; the {split} split is {images.dtype} "
                             f"{tuple(images.shape)}")
        path = folder / f"{split}.pt"
        torch.save({"images": images.permute(0, 2, 3, 1).contiguous(), "labels": labels.to(torch.int64).clone(),
                    "classes": list(classes)}, path)
        written.append(path)
    return written


def command(runs: int) -> str:
    """The Python code the window runs with ``python -c``: airbench's README command, ``runs`` times."""
    return f"import airbench; airbench.warmup94(); [airbench.train94(run=run) for run in range({int(runs)})]"


def parse(text: str) -> dict:
    """airbench's printed table -> its final row of every run (epoch ``eval``), and their mean and std."""
    columns, runs = None, []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        if cells and cells[0] == "run":
            columns = cells
        elif columns and len(cells) == len(columns) and dict(zip(columns, cells)).get("epoch") == "eval":
            row = dict(zip(columns, cells))
            runs.append({"tta_acc": float(row["tta_val_acc"]), "acc": float(row["val_acc"]),
                         "seconds": float(row["total_time_seconds"])})
    if not runs:
        raise ValueError("no final ('eval') row in airbench's output")
    summary = {key: {"mean": statistics.fmean(r[key] for r in runs),
                     "std": statistics.stdev(r[key] for r in runs) if len(runs) > 1 else None} for key in runs[0]}
    return {"runs": runs, **summary, "published": PUBLISHED}
