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

``python -m reporting.peer <runs>``, run by the GPU window (``reporting/window.py``) in the folder that
holds ``cifar10/``, trains airbench94 ``runs`` times after its warm-up and writes ``peer.json`` there:
per run the test accuracy with airbench's test-time augmentation (its published figure) and without it,
and the seconds of training plus that evaluation (the device waited for at both ends; airbench's own
clock also leaves out building the network and loading ``test.pt``, tens of milliseconds). CUDA only,
as airbench is.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

import torch

PUBLISHED = {"tta_acc": 0.9401, "seconds": 3.83, "hardware": "one NVIDIA A100", "data": "CIFAR-10 (the lossless originals)",
             "source": "airbench 0.1.8 README: airbench94.py, mean of 1000 runs"}


def write_airbench_data(folder: Path, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], classes: list[str]) -> list[Path]:
    """``train.pt`` and ``test.pt`` in airbench's layout from uint8 (N, 3, 32, 32) images and their labels."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for split, (images, labels) in splits.items():
        if images.dtype != torch.uint8 or images.shape[1:] != (3, 32, 32):
            raise ValueError(f"airbench needs uint8 32x32 RGB images; the {split} split is {images.dtype} {tuple(images.shape)}")
        path = folder / f"{split}.pt"
        torch.save({"images": images.permute(0, 2, 3, 1).contiguous(), "labels": labels.to(torch.int64).clone(),
                    "classes": list(classes)}, path)
        written.append(path)
    return written


def run_airbench(runs: int) -> dict:
    """``runs`` trainings of airbench94 as its ``train94()`` runs them, each timed with its evaluation."""
    import airbench
    from airbench import lib_airbench94

    hyp = lib_airbench94.hyp
    with contextlib.redirect_stdout(io.StringIO()):
        airbench.warmup94()  # its README: the first run is slower (GPU warm-up)
    test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
    done = []
    for _ in range(runs):
        train_loader = airbench.CifarLoader("cifar10", train=True, batch_size=hyp["opt"]["batch_size"], aug=hyp["aug"],
                                            altflip=True)  # train94()'s own loader, built outside the clock
        torch.cuda.synchronize()
        start = time.perf_counter()
        model = airbench.train94(train_loader, verbose=False)
        tta_acc = airbench.evaluate(model, test_loader, tta_level=hyp["net"]["tta_level"])  # reads back: waits for the GPU
        seconds = time.perf_counter() - start
        done.append({"tta_acc": tta_acc, "acc": airbench.evaluate(model, test_loader, tta_level=0), "seconds": seconds})
    summary = {key: {"mean": statistics.fmean(r[key] for r in done),
                     "std": statistics.stdev(r[key] for r in done) if runs > 1 else None} for key in ("tta_acc", "acc", "seconds")}
    return {"runs": done, **summary, "train_images": len(train_loader.images), "test_images": len(test_loader.images),
            "airbench": getattr(airbench, "__version__", None) or _version("airbench"), "published": PUBLISHED}


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    Path("peer.json").write_text(json.dumps(run_airbench(int(sys.argv[1])), indent=2))
