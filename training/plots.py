"""Figures logged to TensorBoard and written as PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def confusion_matrix_figure(matrix: list[list[int]], classes: list[str]):
    """Rows: true class; columns: predicted class; each cell its count."""
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(n), classes, rotation=90 if n > 10 else 45, ha="right" if n <= 10 else "center")
    axes.set_yticks(range(n), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if n <= 20:
        high = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                axes.text(j, i, str(count), ha="center", va="center", fontsize=7,
                          color="white" if count > high / 2 else "black")
    axes.set_title("confusion matrix (test)")
    figure.tight_layout()
    return figure
