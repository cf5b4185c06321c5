"""Each option at its best: for a sweep over an option (``optimizer``) and a grid of one knob
(``optimizer.lr``) with several seeds, pick each option's knob value by its mean best
validation accuracy over the seeds, and report the test accuracy of those winners.
What ``compare.py`` reports with ``best_of.by`` set (configs/compare.yaml):

    python compare.py dir=multirun/<a sweep of experiment=optimizer_lr_grid> best_of.by=optimizer
    python compare.py dir=<sweep> best_of.by=model best_of.knob=regularization.C

The choice uses validation only; test accuracy is read for the winners, never used to pick
them. ``report`` writes ``best_of_grid.md`` (the table), ``best_of_grid.json`` and
``best_of_grid_train_loss.png`` (each winner's ``train/loss`` per epoch, mean over its seeds,
on one chart) into the sweep dir. A ``by`` or ``knob`` that no run sets, or a dir without runs,
is a ``UserError`` raised before anything is written.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from core.errors import UserError
from core.files import refuse_link, save_figure, write_json, write_text
from reporting.comparison import find_runs


def value_of(run: dict, key: str) -> str | None:
    """The value a run's overrides give ``key`` (``optimizer=adam`` -> ``adam``)."""
    return next((o.split("=", 1)[1] for o in run["override_list"] if o.split("=", 1)[0] == key), None)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def order(setting: str) -> tuple:
    """Knob values in numeric order (``1e-3`` before ``0.01``); values that are not numbers after them, by name."""
    try:
        return 0, float(setting), ""
    except ValueError:
        return 1, 0.0, setting


def check_keys(runs: list[dict], root: Path, by: str, knob: str) -> None:
    """``UserError`` for a ``by`` or ``knob`` the runs cannot be split by, naming the keys they vary."""
    if not runs:
        raise UserError(f"no training runs under {root} (a run dir holds the .hydra/ folder that train.py writes)")
    values: dict[str, set[str]] = {}
    for run in runs:
        for override in run["override_list"]:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    varied = sorted(k for k, v in values.items() if len(v) > 1 and k != "seed") or sorted(set(values) - {"seed"})
    valid = f"valid (the keys the runs vary): {', '.join(varied) or 'none'}"
    for name, key in (("by", by), ("knob", knob)):
        if key == "seed":
            raise UserError(f"best_of.{name}='seed': the seeds are what each cell's mean runs over; {valid}")
        if key not in values:
            raise UserError(f"best_of.{name}={key!r}: no run under {root} sets it; {valid}")
    if by == knob:
        raise UserError(f"best_of.by and best_of.knob are both {by!r}: the knob is tuned for each value of by; {valid}")


def best_of_grid(root: Path, by: str = "optimizer", knob: str = "optimizer.lr") -> list[dict]:
    """One row per value of ``by``: every knob value's mean val acc, the winner, its test acc over seeds."""
    runs = find_runs(Path(root))
    check_keys(runs, root, by, knob)
    cells: dict[str, dict[str, list[dict]]] = {}
    for run in runs:
        option, setting = value_of(run, by), value_of(run, knob)
        if option is not None and setting is not None:
            cells.setdefault(option, {}).setdefault(setting, []).append(run)
    if not cells:
        raise UserError(f"best_of: no run under {root} sets both {by}= and {knob}= (each sets one or the other)")
    rows = []
    for option, grid in sorted(cells.items()):
        scores = {s: statistics.fmean([r["val_acc_best"] if r["status"] == "completed" and r["val_acc_best"] is not None
                                       else 0.0 for r in members]) for s, members in grid.items()}
        best = max(sorted(scores, key=order), key=scores.__getitem__)  # the first best: ties go to the smaller value
        winners = grid[best]
        tests = [r["test_acc"] for r in winners if r["test_acc"] is not None]
        test, std = mean_std(tests) if tests else (float("nan"), float("nan"))
        rows.append({by: option, "grid": {s: round(scores[s], 4) for s in sorted(scores, key=order)},
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


OUTPUTS = ("best_of_grid.md", "best_of_grid.json", "best_of_grid_train_loss.png")


def report(root: Path, by: str = "optimizer", knob: str = "optimizer.lr") -> tuple[list[dict], str, list[Path]]:
    """Choose the winners under ``root`` and write ``OUTPUTS`` there: (the rows, the markdown table, the paths
    written). Every bad input (a key no run sets, no runs, an output that is a link) is refused first."""
    root = Path(root)
    rows = best_of_grid(root, by, knob)
    for name in OUTPUTS:  # every output checked before the first is written: none goes through a link
        refuse_link(root / name)
    table = markdown(rows, by, knob)
    write_text(root / OUTPUTS[0], table + "\n")
    write_json(root / OUTPUTS[1], rows)
    return rows, table, [root / OUTPUTS[0], root / OUTPUTS[1], draw(rows, by, knob, root / OUTPUTS[2])]
