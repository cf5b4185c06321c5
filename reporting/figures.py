"""Figures of what analysis/ finds about a model (summarize.py plot=true)."""

from __future__ import annotations

from pathlib import Path

from analysis.introspection import depth_profile
from core.files import save_figure


def receptive_field_profile(rows, totals, path: Path, title: str) -> None:
    """Receptive field and feature-map height against depth (layers with a spatial output)."""
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot: no backend switch
    from matplotlib.ticker import FormatStrFormatter

    profile = depth_profile(rows, totals)
    depth, rf, height = ([p[i] for p in profile] for i in (0, 2, 3))
    widest = [max(rf[: i + 1]) for i in range(len(rf))]  # branches run one after another: keep the widest
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    axes.plot(depth, rf, ".", color="tab:red", alpha=0.35, markersize=4, label="receptive field of each layer")
    axes.step(depth, widest, where="post", color="tab:red", label="receptive field, widest so far (pixels)")
    axes.step(depth, height, where="post", color="tab:blue", label="feature-map height (pixels)")
    axes.axhline(totals.input_shape[2], color="grey", linestyle="--", linewidth=1, label="input height")
    axes.set_yscale("log", base=2)
    axes.yaxis.set_major_formatter(FormatStrFormatter("%d"))
    axes.set_xlabel("depth (layers with a spatial output, in execution order)")
    axes.set_ylabel("pixels")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save_figure(figure, path, dpi=120)  # atomic, never through a link
