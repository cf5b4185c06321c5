"""Figures logged to TensorBoard and written as PNG, and their text versions for the console.

A ``matplotlib.figure.Figure`` made directly (not through pyplot) draws with the
Agg canvas and needs no display, so nothing here switches the user's backend."""

from __future__ import annotations


def confusion_matrix_figure(matrix: list[list[int]], classes: list[str], title: str = "confusion matrix (test)"):
    """Rows: true class; columns: predicted class; each cell its count. Sized for TensorBoard, which
    scales an image down to its card (about 400 pixels): a few inches at 100 dpi with large type, so
    that the counts stay readable there (10 classes: 5.5 inches, 12-point counts)."""
    n = len(classes)
    size = min(max(4.5, 0.4 * n + 1.5), 16.0)
    font = 12 if n <= 10 else 9 if n <= 20 else 6
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size, size), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    labels = [str(c)[:12] for c in classes]
    axes.set_xticks(range(n), labels, rotation=90 if n > 10 else 45, ha="right" if n <= 10 else "center", fontsize=font)
    axes.set_yticks(range(n), labels, fontsize=font)
    axes.set_xlabel("predicted", fontsize=font + 1)
    axes.set_ylabel("true", fontsize=font + 1)
    if n <= 20:
        high = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                axes.text(j, i, str(count), ha="center", va="center", fontsize=font - (2 if count >= 100 else 0),
                          color="white" if count > high / 2 else "black")
    axes.set_title(title, fontsize=font + 1)
    figure.tight_layout()
    return figure


def confusion_matrix_text(matrix: list[list[int]], classes: list[str], max_classes: int = 20) -> str:
    """Per-class accuracy and the class each is most confused with, then the matrix itself (rows: true,
    columns: predicted) when there are at most ``max_classes`` classes."""
    names = [str(c)[:12] for c in classes]
    width = max(len(n) for n in names)
    lines = [f"{'class':<{width}}  {'acc':>6}  {'images':>6}  most confused with"]
    for i, row in enumerate(matrix):
        total = sum(row)
        others = [(count, j) for j, count in enumerate(row) if j != i and count]
        worst = f"{names[max(others)[1]]} ({max(others)[0]})" if others else "-"
        lines.append(f"{names[i]:<{width}}  {row[i] / total if total else 0:>6.4f}  {total:>6}  {worst}")
    if len(matrix) > max_classes:
        return "\n".join(lines + [f"confusion matrix: {len(matrix)} classes, see confusion_matrix.png"])
    cell = max(width, *(len(str(c)) for row in matrix for c in row))
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              " " * width + "  " + " ".join(f"{n:>{cell}}" for n in names)]
    lines += [f"{names[i]:<{width}}  " + " ".join(f"{c:>{cell}}" for c in row) for i, row in enumerate(matrix)]
    return "\n".join(lines)
