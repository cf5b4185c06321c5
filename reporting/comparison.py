"""Reading training runs back and comparing them: what ``compare.py`` reports.

A run is a folder holding the .hydra/ folder that train.py writes: what it
changed comes from .hydra/overrides.yaml, its numbers from metrics.json, its
validation curve from its TensorBoard events. Runs that differ only in
``seed`` form one cell, reported as mean ± std over the seeds (sample standard
deviation). A run without metrics.json, with ``status: failed`` in it, or with
a non-finite loss is listed and marked, never dropped; so is a run whose files
cannot be read (a truncated metrics.json, a damaged .hydra/ YAML), marked
``unreadable`` with the reason. The tables are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import yaml

from core.files import save_figure, write_text
from core.formatting import human, markdown_table

# table column: metrics.json key written by train.py
NUMBERS = {"params": "params", "macs": "macs", "val_acc_best": "val/acc_best", "val_loss": "val/loss",
           "test_acc": "test/acc", "test_loss": "test/loss", "epochs": "epochs", "wall_time_s": "wall_time_s",
           "train_images_per_s": "train_images_per_s"}
TEXT = ("run", "overrides", "all_overrides", "model", "data", "seed", "status", "error")
HEADERS = {"overrides": "overrides", "model": "model", "seed": "seed", "runs": "runs", "status": "status",
           "params": "params", "macs": "MACs", "val_acc_best": "best val acc", "test_acc": "test acc",
           "epochs": "epochs", "wall_time_s": "wall time (s)", "train_images_per_s": "train images/s"}


# what compare.py writes into the dir it reads (the figures once per data set: val_acc_<data>.png
# when a sweep holds several)
OUTPUTS = ("comparison.md", "comparison.csv", "comparison_cells.csv", "val_acc*.png", "test_acc_vs_*.png")
STATUSES = ("completed", "debug", "diverged", "failed", "unreadable")  # debug: fast_dev_run, overfit_batches (train.py)
LIMIT = 1e15  # the largest number a metrics.json column may hold (parameters, MACs, seconds, images/s)


class Unreadable(Exception):
    """A run file that exists but cannot be read back (truncated, not JSON or YAML, not valid text)."""


def load_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise Unreadable(f"{path.name} is unreadable: "
                         f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None


def load_json(path: Path):
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise Unreadable(f"{path.name} is unreadable: {str(error).splitlines()[0]}") from None


def read_run(hydra_dir: Path) -> tuple[dict, dict | None, dict, list, str]:
    """(config, metrics, Hydra's choices, overrides, why a file is unreadable or "")."""
    parts: dict = {"config": {}, "metrics": None, "hydra": {}, "overrides": []}
    problem = ""
    for key, read, path in (("config", load_yaml, hydra_dir / "config.yaml"),
                            ("hydra", load_yaml, hydra_dir / "hydra.yaml"),
                            ("overrides", load_yaml, hydra_dir / "overrides.yaml"),
                            ("metrics", load_json, hydra_dir.parent / "metrics.json")):
        try:
            parts[key] = read(path) if key == "metrics" else read(path) or parts[key]
        except Unreadable as error:
            problem = problem or str(error)
    for key, kind in (("config", dict), ("hydra", dict), ("overrides", list)):
        if not isinstance(parts[key], kind):
            problem, parts[key] = problem or f".hydra/{key}.yaml is unreadable: not a {kind.__name__}", kind()
    if parts["metrics"] is not None and not isinstance(parts["metrics"], dict):
        problem, parts["metrics"] = problem or "metrics.json is unreadable: not a JSON object", None
    choices = ((parts["hydra"].get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    return parts["config"], parts["metrics"], choices if isinstance(choices, dict) else {}, parts["overrides"], problem


def status_of(metrics: dict | None) -> tuple[str, str]:
    """completed | diverged (a loss is NaN or infinite) | failed (no metrics, or train.py said so)."""
    if metrics is None:
        return "failed", "no metrics.json: the run crashed, was killed or is still running"
    status = metrics.get("status", "completed")
    losses = [v for k, v in metrics.items() if k.endswith("loss") and isinstance(v, float)]
    if status == "completed" and not all(math.isfinite(v) for v in [*losses, metrics.get("val/acc_best", 0.0)]):
        status = "diverged"
    return status, str(metrics.get("error", ""))


def number(value, column: str) -> tuple[float | int | None, str]:
    """(the value, "") when it is a number a run can have in ``column`` (NaN and inf too: a diverged
    run's loss); (None, why) for one out of range (a hand-edited or damaged metrics.json: ``1e400``,
    an accuracy of 7), which must not take the table of the whole sweep down with it."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None, ""
    if isinstance(value, float) and not math.isfinite(value):
        return value, ""
    top = 1.0 if "acc" in column else LIMIT
    if not 0 <= value <= top:
        shown = (f"an integer of {len(str(abs(value)))} digits" if isinstance(value, int) and abs(value) > 1e300
                 else f"{value:.4g}")
        return None, f"{shown} is out of range (0 to {top:g})"
    return value, ""


def find_runs(root: Path) -> list[dict]:
    """One row per training run under ``root`` (any depth)."""
    runs = []
    for hydra_dir in sorted(root.rglob(".hydra")):
        config, metrics, choices, overrides, problem = read_run(hydra_dir)
        if config.get("task_name", "train") != "train":  # evaluate.py and other entry points write run dirs too
            continue
        status, error = ("unreadable", problem) if problem else status_of(metrics)
        overrides = [str(o) for o in overrides]
        model = config.get("model")
        row = {"path": hydra_dir.parent, "run": hydra_dir.parent.relative_to(root).as_posix() or ".",
               "override_list": overrides, "all_overrides": " ".join(overrides),
               "model": str((model if isinstance(model, dict) else {}).get("name", choices.get("model", ""))),
               "data": choices.get("data", ""), "seed": config.get("seed", ""), "status": status, "error": error}
        for column, key in NUMBERS.items():
            row[column], bad = number((metrics or {}).get(key), column)
            if bad and row["status"] != "unreadable":
                row["status"], row["error"] = "unreadable", f"metrics.json: {key}={bad}"
        runs.append(row)
    return runs


def label_runs(runs: list[dict]) -> list[str]:
    """Each run's overrides that not every run shares (its place in the sweep); returns the shared ones."""
    shared = set.intersection(*(set(r["override_list"]) for r in runs))
    for r in runs:
        r["overrides"] = " ".join(o for o in r["override_list"] if o not in shared) or r["run"]
        r["cell"] = " ".join(o for o in r["override_list"] if o not in shared and not o.startswith("seed="))
    return sorted(shared)


def cells(runs: list[dict], group: bool) -> list[dict]:
    """Runs that differ only in their seed, merged: mean and std of every number over its finite values.
    Runs with equal settings and equal seeds (reruns) stay apart: they are not a spread over seeds."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["cell"] or "(the shared settings)" if group else r["run"], []).append(r)
    for cell, members in list(groups.items()):
        if len({m["seed"] for m in members}) < len(members):
            del groups[cell]
            groups.update({m["run"]: [m] for m in members})
    merged = []
    for cell, members in groups.items():
        cell = cell if len(members) > 1 else members[0]["overrides"]
        row = {"overrides": cell, "model": ", ".join(sorted({m["model"] for m in members})), "runs": len(members),
               "seeds": " ".join(str(m["seed"]) for m in members)}
        counts = {s: sum(m["status"] == s for m in members) for s in STATUSES}
        row["status"] = ", ".join(f"{n} {s}" if n < len(members) else s for s, n in counts.items() if n)
        for column in NUMBERS:
            values = [m[column] for m in members if m[column] is not None and math.isfinite(m[column])]
            row[column] = statistics.fmean(values) if values else None
            row[column + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        row["members"] = members
        merged.append(row)
    return merged


def sort_rows(rows: list[dict], column: str, ascending: str) -> list[dict]:
    """Sorted by one column; missing and NaN values always last."""
    if "runs" in rows[0]:  # cells: their names for the run columns
        column = {"seed": "seeds", "run": "overrides", "all_overrides": "overrides"}.get(column, column)
    present = [r for r in rows if r.get(column) not in (None, "") and r[column] == r[column]]
    numeric = all(isinstance(r[column], (int, float)) for r in present)
    reverse = numeric if ascending == "auto" else ascending == "false"
    ordered = sorted(present, key=(lambda r: r[column]) if numeric else (lambda r: str(r[column])), reverse=reverse)
    return ordered + [r for r in rows if not any(r is p for p in present)]


def cell_text(row: dict, column: str) -> str:
    value, std = row.get(column), row.get(column + "_std")
    if value is None or column not in NUMBERS or not math.isfinite(value):
        return "—" if value is None else str(value)  # markdown_table escapes a |
    if column in ("params", "macs"):  # as in the README's zoo table
        return human(value)
    if column == "epochs" and not std:  # one run, or every seed ran as long: a whole number
        return f"{value:.0f}"
    digits = 4 if "acc" in column or "loss" in column else 0 if column == "train_images_per_s" else 1
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def markdown(rows: list[dict], columns: list[str]) -> str:
    def status(row: dict) -> str:
        error = row.get("error", "")
        return row["status"] + (f": {error[:100]}{'…' if len(error) > 100 else ''}" if error else "")

    cells = [[cell_text({**row, "status": status(row)}, c) for c in columns] for row in rows]
    right = [i for i, c in enumerate(columns) if c in NUMBERS or c == "runs"]
    return "\n".join(markdown_table([HEADERS[c] for c in columns], cells, right))


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{c: ("" if r.get(c) is None else r[c]) for c in columns} for r in rows])
    write_text(path, text.getvalue())


def val_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    """val/acc by epoch (1-based) from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    if "val/acc" not in tags:
        return [], []
    if "epoch" in tags:  # runs written before training/loggers.py dropped the epoch scalar
        epoch_at = {e.step: e.value for e in events.Scalars("epoch")}
    else:  # train/loss is logged once per epoch, at the step where that epoch's val/acc is logged
        epoch_at = {e.step: i for i, e in enumerate(events.Scalars("train/loss"))} if "train/loss" in tags else {}
    points = {epoch_at.get(e.step, i) + 1: e.value for i, e in enumerate(events.Scalars("val/acc"))}
    return sorted(points), [points[x] for x in sorted(points)]


SCATTERS = (("params", "parameters"), ("macs", "MACs per image"), ("wall_time_s", "wall time of the fit (s)"))


def short_labels(cells: list[dict]) -> tuple[str, list[str]]:
    """(legend title, one label per cell): only what varies between the cells, by value when every cell sets
    the same keys (title ``optimizer, lr``; labels ``adam, 0.001``), else ``key=value`` pairs; each label at
    most 40 characters. What every cell shares is said once, in the table."""
    settings = [{"model": c["model"], **dict(o.split("=", 1) for o in c["cell_overrides"] if "=" in o)} for c in cells]
    keys = [k for k in dict.fromkeys(k for s in settings for k in s) if len({s.get(k) for s in settings}) > 1]
    if not keys:
        return "", [c["overrides"][:40] for c in cells]
    name = lambda key: (key.rsplit(".", 1)[-1]  # noqa: E731
                        if sum(k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1] for k in keys) == 1 else key)
    if all(all(k in s for k in keys) for s in settings):
        return ", ".join(map(name, keys)), [", ".join(s[k] for k in keys)[:40] for s in settings]
    return "", [" ".join(f"{name(k)}={s[k]}" for k in keys if k in s)[:40] or "(the shared settings)" for s in settings]


def plots(root: Path, table: list[dict]) -> list[Path]:
    """Per data set: val_acc.png (validation accuracy by epoch, every run; a cell's seeds share a colour) and
    test accuracy (mean ± std over seeds) against parameters, MACs and wall time (test_acc_vs_params.png,
    test_acc_vs_macs.png, test_acc_vs_wall_time.png). Runs of several data sets: one set of figures each,
    named ``..._<data>.png``. Labels name only what varies, in a legend below the axes; figures drawn on the
    Agg canvas (``matplotlib.figure.Figure``, not pyplot), so the caller's backend is left alone."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    by_data: dict[str, list[dict]] = {}
    for cell in table:
        cell["cell_overrides"] = [o for o in cell["overrides"].split() if not o.startswith(("data=", "seed="))]
        by_data.setdefault(cell["members"][0]["data"] or "data", []).append(cell)
    written = []
    for data, cells in sorted(by_data.items()):
        suffix = f"_{data}" if len(by_data) > 1 else ""
        title, labels = short_labels(cells)
        colors = colormaps["tab10" if len(cells) <= 10 else "tab20"]
        columns = min(len(cells), 4)

        # called within this iteration only: the title, columns and suffix it reads are this iteration's (B023)
        def finish(figure, axes, name: str) -> None:
            if axes.get_legend_handles_labels()[0]:
                axes.legend(title=title or None, fontsize=8, title_fontsize=8, ncol=columns,  # noqa: B023
                            loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
            written.append(root / f"{name}{suffix}.png")  # noqa: B023
            save_figure(figure, written[-1], dpi=100, bbox_inches="tight")

        figure = Figure(figsize=(8, 5))
        axes = figure.subplots()
        for i, cell in enumerate(cells):
            for j, run in enumerate(cell["members"]):
                xs, ys = val_curve(run["path"])
                axes.plot(xs, ys, marker=".", color=colors(i % colors.N), label=labels[i] if j == 0 else None)
        axes.set(xlabel="epoch", ylabel="validation accuracy", title=f"{data}: validation accuracy by epoch, every run")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        finish(figure, axes, "val_acc")
        for column, name in SCATTERS:
            figure = Figure(figsize=(8, 5))
            axes = figure.subplots()
            points = [(i, c) for i, c in enumerate(cells) if c[column] and c["test_acc"] is not None]
            for i, cell in points:
                axes.errorbar(cell[column], cell["test_acc"], xerr=cell[f"{column}_std"], yerr=cell["test_acc_std"],
                              fmt="o", color=colors(i % colors.N), capsize=3, label=labels[i])
            if points:
                axes.set_xscale("log")
            else:
                axes.text(0.5, 0.5, f"no run has {column} in its metrics.json", ha="center", transform=axes.transAxes)
            axes.set(xlabel=f"{name} (log scale)", ylabel="test accuracy (mean ± std over seeds)",
                     title=f"{data}: test accuracy against {name.split(' (')[0]}")
            axes.grid(alpha=0.3, which="both")
            finish(figure, axes, f"test_acc_vs_{column.removesuffix('_s')}")
    return written


def optuna_best(root: Path, runs: list[dict]) -> str:
    """The best trial of an Optuna search, from the sweeper's optimization_results.yaml."""
    results = load_yaml(root / "optimization_results.yaml") or {}
    if "best_params" not in results:
        return ""
    best = results["best_params"]

    def same(given: str | None, value) -> bool:
        numeric = isinstance(value, float) and given is not None
        return given == str(value) or (numeric and math.isclose(float(given), value))

    def matches(run: dict) -> bool:
        given = dict(o.split("=", 1) for o in run["override_list"] if "=" in o)
        return all(same(given.get(key), value) for key, value in best.items())

    run = next((r["overrides"] for r in runs if matches(r)), "?")
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items())
    return f"Optuna's best trial: `{params}`, value {results['best_value']:.4f} (the run `{run}`)"
