"""Each option at its best: for a sweep over an option (``optimizer``) and a grid of one knob
(``optimizer.lr``) with several seeds, pick each option's knob value by its mean best
validation accuracy over the seeds, and report the test accuracy of those winners.

    python -m reporting.best_of_grid dir=multirun/<a sweep of experiment=optimizer_lr_grid>
    python -m reporting.best_of_grid dir=<sweep> by=activation knob=optimizer.lr

The choice uses validation only; test accuracy is read for the winners, never used to pick
them. Writes ``best_of_grid.md`` (the table, also printed), ``best_of_grid.json`` and
``best_of_grid_train_loss.png`` (each winner's ``train/loss`` per epoch, mean over its seeds,
on one chart) into the sweep dir.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from reporting.comparison import find_runs
from core.files import refuse_link, save_figure, write_json, write_text


def value_of(run: dict, key: str) -> str | None:
    """The value a run's overrides give ``key`` (``optimizer=adam`` -> ``adam``)."""
    return next((o.split("=", 1)[1] for o in run["override_list"] if o.split("=", 1)[0] == key), None)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def best_of_grid(root: Path, by: str = "optimizer", knob: str = "optimizer.lr") -> list[dict]:
    """One row per value of ``by``: every knob value's mean val acc, the winner, its test acc over seeds."""
    cells: dict[str, dict[str, list[dict]]] = {}
    for run in find_runs(Path(root)):
        option, setting = value_of(run, by), value_of(run, knob)
        if option is not None and setting is not None:
            cells.setdefault(option, {}).setdefault(setting, []).append(run)
    if not cells:
        raise ValueError(f"no run under {root} overrides both {by}= and {knob}=")
    rows = []
    for option, grid in sorted(cells.items()):
        scores = {s: statistics.fmean([r["val_acc_best"] if r["status"] == "completed" and r["val_acc_best"] is not None
                                       else 0.0 for r in runs]) for s, runs in grid.items()}
        best = max(scores, key=lambda s: (scores[s], -float(s)))  # ties: the smaller value
        winners = grid[best]
        tests = [r["test_acc"] for r in winners if r["test_acc"] is not None]
        test, std = mean_std(tests) if tests else (float("nan"), float("nan"))
        rows.append({by: option, "grid": {s: round(v, 4) for s, v in sorted(scores.items(), key=lambda kv: float(kv[0]))},
                     knob: best, "val_acc_best": scores[best], "test_acc": test, "test_acc_std": std,
                     "seeds": sorted(r["seed"] for r in winners), "runs": [str(r["path"]) for r in winners]})
    return rows


def loss_curve(run_dir: str) -> dict[int, float]:
    """``train/loss`` (the epoch mean) by epoch, from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    if "train/loss" not in events.Tags()["scalars"]:
        return {}
    return {i + 1: e.value for i, e in enumerate(events.Scalars("train/loss"))}


def draw(rows: list[dict], by: str, knob: str, path: Path) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    for row in rows:
        curves = [loss_curve(run) for run in row["runs"]]
        epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        means = [statistics.fmean(c[e] for c in curves) for e in epochs]
        axes.plot(epochs, means, marker="o", label=f"{row[by]} ({knob}={row[knob]})")
    axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("train/loss (mean over seeds)")
    axes.set_title(f"each {by} at its best {knob} (chosen on validation)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save_figure(figure, path, root=path.parent, dpi=120)  # atomic, never through a link
    return path


def markdown(rows: list[dict], by: str, knob: str) -> str:
    lines = [f"| {by} | best val acc by {knob} (mean over seeds) | chosen {knob} | test acc of the winner |",
             "|---|---|---:|---:|"]
    for row in rows:
        grid = ", ".join(f"{s}: {v:.3f}" for s, v in row["grid"].items())
        lines.append(f"| {row[by]} | {grid} | {row[knob]} | {row['test_acc']:.4f} ± {row['test_acc_std']:.4f} "
                     f"({len(row['seeds'])} seeds) |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = sorted(set(args) - {"dir", "by", "knob"}) + [a for a in argv if "=" not in a]
    if unknown or "dir" not in args:
        print(f"error: usage: python -m reporting.best_of_grid dir=<sweep dir> [by=optimizer] [knob=optimizer.lr]"
              f"{'; unknown: ' + ', '.join(unknown) if unknown else ''}", file=sys.stderr)
        return 2
    root, by, knob = Path(args["dir"]), args.get("by", "optimizer"), args.get("knob", "optimizer.lr")
    try:
        rows = best_of_grid(root, by, knob)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown(rows, by, knob)
    print(table)
    try:  # every output checked before the first is written: none goes through a link
        for name in ("best_of_grid.md", "best_of_grid.json", "best_of_grid_train_loss.png"):
            refuse_link(root / name)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_text(root / "best_of_grid.md", table + "\n")
    write_json(root / "best_of_grid.json", [{k: v for k, v in r.items()} for r in rows])
    print(f"wrote {draw(rows, by, knob, root / 'best_of_grid_train_loss.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
