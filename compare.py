"""Compare training runs: one table and three plots from a sweep dir or from outputs/.

    python compare.py dir=multirun/2025-06-01_12-00-00           # a sweep (train.py -m ...)
    python compare.py dir=outputs sort=params ascending=true      # every single run, smallest first
    python compare.py dir=multirun/<sweep> sort=wall_time_s group=false

A run is a folder holding a .hydra/ folder written by train.py: what it changed comes from
.hydra/overrides.yaml, its numbers from metrics.json, its validation curve from its TensorBoard
events. Runs that differ only in ``seed`` form one cell, reported as mean ± std over the seeds
(sample standard deviation). A run without metrics.json (crashed, killed or still running), with
``status: failed`` in it, with a non-finite loss, or whose files cannot be read (a truncated
metrics.json: ``unreadable``) is listed and marked, never dropped.

Writes into ``dir``: comparison.md (also printed), comparison.csv (one row per run, raw numbers),
comparison_cells.csv (one row per cell, mean and std; only when seeds repeat), val_acc.png (validation
accuracy per epoch, every run), test_acc_vs_params.png and test_acc_vs_macs.png. After an Optuna
search (hparams_search=...) the best trial from optimization_results.yaml is named too.

The command line reads like train.py's (key=value) but is parsed here, not by Hydra: there is no
config to compose, and a Hydra app would write a run dir of its own, with a .hydra/ folder, into
the very tree it reads.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cli.commandline import fail
from training.files import write_text
from reporting.comparison import (NUMBERS, TEXT, cells, find_runs, label_runs, markdown, optuna_best, plots,
                                 sort_rows, write_csv)

# key: default. sort: any column (test_acc, params, wall_time_s, overrides, ...); ascending: auto sorts
# numbers high to low and text A to Z; group: merge runs that differ only in their seed
SETTINGS = {"dir": "outputs", "sort": "test_acc", "ascending": "auto", "group": "true"}


def parse(argv: list[str]) -> dict:
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        sys.exit(0)
    settings = dict(SETTINGS)
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in SETTINGS or not value:
            fail(f"{arg!r} is not a setting; valid: {', '.join(f'{k}=...' for k in SETTINGS)}")
        settings[key] = value
    for key, valid in (("ascending", ("auto", "true", "false")), ("group", ("true", "false"))):
        if settings[key] not in valid:
            fail(f"{key}={settings[key]!r} is not valid; valid: {', '.join(valid)}")
    settings["sort"] = settings["sort"].replace("/", "_")
    if settings["sort"] not in (*TEXT, *NUMBERS):
        fail(f"sort={settings['sort']!r} is not a column; valid: {', '.join((*TEXT, *NUMBERS))}")
    if not Path(settings["dir"]).is_dir():
        fail(f"dir={settings['dir']!r} is not a directory (a sweep dir under multirun/, or outputs/)")
    return settings


def main(argv: list[str]) -> list[dict]:
    settings = parse(argv)
    root = Path(settings["dir"])
    runs = find_runs(root)
    if not runs:
        fail(f"no training runs under {root} (a run dir holds the .hydra/ folder that train.py writes)")
    shared = label_runs(runs)
    table = sort_rows(cells(runs, settings["group"] == "true"), settings["sort"], settings["ascending"])
    runs = sort_rows(runs, settings["sort"], settings["ascending"])
    repeated = any(c["runs"] > 1 for c in table)
    numbers = ["params", "macs", "val_acc_best", "test_acc", "epochs", "wall_time_s", "train_images_per_s"]
    text = [f"# Comparison of {len(runs)} runs in `{root}`", ""]
    if shared:
        text += [f"Shared by every run: `{' '.join(shared)}`", ""]
    best = optuna_best(root, runs)
    if best:
        text += [best, ""]
    if repeated:
        cell_table = markdown(table, ["overrides", "model", "runs", "status", *numbers])
        text += [f"{len(table)} cells, mean ± std over seeds:", "", cell_table, "", "## Every run", ""]
    text += [markdown(runs, ["overrides", "model", "seed", "status", *numbers]), ""]
    write_text(root / "comparison.md", "\n".join(text))  # atomic, as the CSVs
    write_csv(root / "comparison.csv", runs, [*TEXT, *NUMBERS])
    written = [root / "comparison.md", root / "comparison.csv"]
    if repeated:
        write_csv(root / "comparison_cells.csv", table, ["overrides", "model", "runs", "seeds", "status",
                                                         *(f"{c}{s}" for c in NUMBERS for s in ("", "_std"))])
        written.append(root / "comparison_cells.csv")
    else:
        (root / "comparison_cells.csv").unlink(missing_ok=True)  # from an earlier call: would contradict the table
    written += plots(root, table)
    print("\n".join(text))
    print("wrote " + ", ".join(str(p) for p in written))
    return runs


if __name__ == "__main__":
    main(sys.argv[1:])
