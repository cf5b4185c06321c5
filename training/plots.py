"""Figures logged to TensorBoard and written as PNG.

A ``matplotlib.figure.Figure`` made directly (not through pyplot) draws with the
Agg canvas and needs no display, so nothing here switches the user's backend."""

from __future__ import annotations


def confusion_matrix_figure(matrix: list[list[int]], classes: list[str]):
    """Rows: true class; columns: predicted class; each cell its count."""
    from matplotlib.figure import Figure

    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
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
