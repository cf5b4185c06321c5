"""The zoo at a glance: every registered model with its parameters and MACs
at 32x32 (CIFAR stem, 10 classes) and 224x224 (ImageNet stem, 1000 classes).

    python zoo.py                 # markdown table on stdout (the README's)
    python zoo.py --models resnet18 vgg16

MACs are counted by torch.utils.flop_counter (one multiply-accumulate = two
FLOPs) on one image in eval mode.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from models import create_model, list_models

CIFAR_ONLY_NOTE = "CIFAR only"


def count(name: str, stem: str, size: int, num_classes: int) -> tuple[int, int] | None:
    """(parameters, MACs), or None where the model has no such stem."""
    try:
        model = create_model(name, num_classes=num_classes, in_channels=3, stem=stem).eval()
    except ValueError:
        return None
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return params, counter.get_total_flops() // 2


def human(n: int) -> str:
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list_models())
    args = parser.parse_args()
    print("| model | params 32x32, 10 cl. | MACs 32x32 | params 224x224, 1000 cl. | MACs 224x224 |")
    print("|---|---:|---:|---:|---:|")
    for name in args.models:
        cells = []
        for stem, size, classes in (("cifar", 32, 10), ("imagenet", 224, 1000)):
            result = count(name, stem, size, classes)
            cells += [f"{result[0]:,}", human(result[1])] if result else ["—", "—"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
