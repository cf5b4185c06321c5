"""The zoo at a glance, the README's table: every registered model with its paper (the
``PAPER`` of its file) and its parameters and MACs at 32x32 (CIFAR stem, 10 classes) and
224x224 (ImageNet stem, 1000 classes), counted by analysis/introspection.py."""

from __future__ import annotations

from collections.abc import Iterator

from analysis.introspection import count_parameters_and_macs
from core.formatting import human, markdown_table
from models import ModelOptionError, create_model, list_models, model_family, model_paper

SIZES = (("cifar", 32, 10), ("imagenet", 224, 1000))  # (stem, input side, classes) of the two column pairs
HEADER = ["model", "paper", "year", "params 32x32, 10 cl.", "MACs 32x32", "params 224x224, 1000 cl.", "MACs 224x224"]


def table_order(name: str) -> tuple:
    """Families by their paper's year, then by depth (resnet18 before resnet101)."""
    digits = "".join(c if c.isdigit() else " " for c in name).split()
    return model_paper(name).get("year", 9999), model_family(name), int(digits[0]) if digits else 0, name


def count(name: str, stem: str, size: int, num_classes: int) -> tuple[int, int] | None:
    """(parameters, MACs per image), or None where the model has no such stem."""
    try:
        model = create_model(name, num_classes=num_classes, in_channels=3, stem=stem)
    except ModelOptionError:
        return None
    return count_parameters_and_macs(model, (3, size, size))


def zoo_lines(names: list[str] | None = None) -> Iterator[str]:
    """The markdown table, a line at a time (the 224x224 counts of the large models take a while)."""
    yield from markdown_table(HEADER, [], right=range(3, len(HEADER)))
    for name in sorted(names or list_models(), key=table_order):
        paper = model_paper(name)
        cells = []
        for stem, size, classes in SIZES:
            counted = count(name, stem, size, classes)
            cells += [f"{counted[0]:,}", human(counted[1])] if counted else ["—", "—"]
        yield markdown_table(HEADER, [[name, paper.get("title", "—"), paper.get("year", "—"), *cells]])[-1]
