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

from models import create_model, list_models, model_family

# family (the model's module) -> (paper, year), in the order the table lists them
PAPERS = {
    "lenet": ("LeCun et al., Gradient-Based Learning Applied to Document Recognition", 1998),
    "alexnet": ("Krizhevsky et al., ImageNet Classification with Deep CNNs", 2012),
    "vgg": ("Simonyan & Zisserman, Very Deep Convolutional Networks", 2014),
    "googlenet": ("Szegedy et al., Going Deeper with Convolutions", 2014),
    "resnet": ("He et al., Deep Residual Learning for Image Recognition", 2015),
    "densenet": ("Huang et al., Densely Connected Convolutional Networks", 2017),
    "mobilenet": ("Howard et al. 2017 (v1); Sandler et al. 2018 (v2)", 2017),
    "efficientnet": ("Tan & Le, EfficientNet: Rethinking Model Scaling", 2019),
    "linear": ("Cox 1958 (logistic regression); Weston & Watkins 1999 (multi-class SVM)", 1958),
}


def table_order(name: str) -> tuple:
    """Families in the order of PAPERS, then by depth (resnet18 before resnet101)."""
    digits = "".join(c if c.isdigit() else " " for c in name).split()
    return (list(PAPERS).index(model_family(name)), int(digits[0]) if digits else 0, name)


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
    parser.add_argument("--models", nargs="*", default=sorted(list_models(), key=table_order))
    args = parser.parse_args()
    print("| model | paper | year | params 32x32, 10 cl. | MACs 32x32 | params 224x224, 1000 cl. | MACs 224x224 |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name in args.models:
        paper, year = PAPERS[model_family(name)]
        cells = []
        for stem, size, classes in (("cifar", 32, 10), ("imagenet", 224, 1000)):
            result = count(name, stem, size, classes)
            cells += [f"{result[0]:,}", human(result[1])] if result else ["—", "—"]
        print(f"| {name} | {paper} | {year} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
