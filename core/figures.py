"""Figures logged to TensorBoard and written as PNG, and their text versions for the console.

A ``matplotlib.figure.Figure`` made directly (not through pyplot) draws with the
Agg canvas and needs no display, so nothing here switches the user's backend.
Figures meant for a report (``evaluate.py visualize=true``) are at least 8
inches wide at 100 dpi (800 pixels), titled, their panels labelled."""

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


WIDE = 8.0  # inches, at 100 dpi: the narrowest report figure


def _suptitle(figure, text: str, fontsize: int = 11) -> None:
    """A title wrapped to the figure's width (about 9 pixels a character at 11 points)."""
    import textwrap

    figure.suptitle(textwrap.fill(text, width=int(figure.get_figwidth() * figure.dpi / (0.8 * fontsize))),
                    fontsize=fontsize)


def _picture(axes, image, title: str = "", fontsize: int = 9) -> None:
    """One image (H, W) or (H, W, 3) in [0, 1] on ``axes``, pixels as squares, no ticks."""
    axes.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    axes.set_xticks([]), axes.set_yticks([])
    if title:
        axes.set_title(title, fontsize=fontsize)


def filters_figure(tiles, title: str, per_row: int = 8):
    """First-layer filters, one panel each, numbered: ``tiles`` (N, H, W) or (N, H, W, 3) in [0, 1]."""
    from matplotlib.figure import Figure

    n = len(tiles)
    columns = min(n, per_row if n <= 4 * per_row else 2 * per_row)
    rows = -(-n // columns)
    side = WIDE / columns
    figure = Figure(figsize=(WIDE, side * rows + 0.9), dpi=100)
    for i, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        if i < n:
            _picture(axes, tiles[i], f"{i}", fontsize=8)
        else:
            axes.axis("off")
    _suptitle(figure, title)
    figure.tight_layout()
    return figure


def feature_maps_figure(image, stages, title: str, input_title: str, per_row: int = 8):
    """One image (H, W[, 3]) in [0, 1] and, a row for each stage, its first ``per_row`` maps:
    ``stages`` [(label, maps (C, h, w) in [0, 1])], fine to coarse."""
    from matplotlib.figure import Figure

    rows = 1 + len(stages)
    figure = Figure(figsize=(WIDE + 2, 1.5 * rows + 0.8), dpi=100)
    grid = figure.subplots(rows, per_row, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    _picture(grid[0][0], image)
    grid[0][0].axis("on")
    grid[0][1].text(0, 0.5, input_title, fontsize=10, va="center", transform=grid[0][1].transAxes)
    for row, (label, maps) in zip(grid[1:], stages):
        for axes, picture in zip(row, maps[:per_row]):
            _picture(axes, picture)
            axes.axis("on")
        row[0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    _suptitle(figure, title)
    figure.tight_layout()
    return figure


def grad_cam_figure(images, overlays, labels: list[str], title: str):
    """Images above their Grad-CAM overlays, one column each, titled ``labels`` ("true\n→ predicted");
    ``images`` and ``overlays`` (N, H, W, 3) in [0, 1]."""
    from matplotlib.figure import Figure

    n = len(images)
    columns = max(n, 4)
    side = max(WIDE / columns, 1.1)
    figure = Figure(figsize=(side * columns, 2 * side + 1.3), dpi=100)
    grid = figure.subplots(2, columns, squeeze=False)
    for column in range(columns):
        if column < n:
            _picture(grid[0][column], images[column], labels[column], fontsize=8)
            _picture(grid[1][column], overlays[column])
        else:
            grid[0][column].axis("off"), grid[1][column].axis("off")
    grid[0][0].set_ylabel("image", fontsize=8)
    grid[1][0].set_ylabel("Grad-CAM", fontsize=8)
    _suptitle(figure, title)
    figure.tight_layout()
    return figure


def receptive_field_figure(image, row, title: str):
    """A matplotlib figure: ``image`` (a torch tensor, C x H x W) in [0, 1] with the input region that the central
    unit of ``row``'s output sees (a ``analysis.introspection.LayerRow``), clipped to the image,
    and the unit's own footprint (jump x jump). Returns (figure, unit, (rows, cols))."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    height, width = image.shape[-2:]
    unit = (row.output_shape[-2] // 2, row.output_shape[-1] // 2)
    (top, bottom), (left, right) = row.rf_interval(unit, (height, width))
    figure = Figure(figsize=(5, 5.4))
    axes = figure.add_subplot()
    shown = image.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()
    axes.imshow(shown, cmap="gray" if shown.ndim == 2 else None, interpolation="nearest")
    axes.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False, edgecolor="red",
                             linewidth=2, label=f"receptive field: {row.rf[0]}x{row.rf[1]} (clipped to the image)"))
    centre = (row.rf_start[0] + unit[0] * row.jump[0] + (row.rf[0] - row.jump[0]) / 2,
              row.rf_start[1] + unit[1] * row.jump[1] + (row.rf[1] - row.jump[1]) / 2)
    axes.add_patch(Rectangle((centre[1] - 0.5, centre[0] - 0.5), row.jump[1], row.jump[0], fill=False,
                             edgecolor="yellow", linewidth=1.5, label=f"the unit's step: jump {row.jump[0]}"))
    axes.set_title(title, fontsize=9)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=8)
    axes.set_xticks([]), axes.set_yticks([])
    figure.tight_layout()
    return figure, unit, ((top, bottom), (left, right))
