"""Compare training runs: one table and four plots (per data set) from a sweep dir or from outputs/.

    python compare.py dir=multirun/2025-06-01_12-00-00           # a sweep (train.py -m ...)
    python compare.py dir=outputs sort=params ascending=true      # every single run, smallest first
    python compare.py dir=multirun/<sweep> sort=wall_time_s group=false
    python compare.py dir=multirun/<sweep> best_of.by=optimizer best_of.knob=optimizer.lr   # each at its best lr

A run is a folder holding a .hydra/ folder written by train.py: what it changed comes from
.hydra/overrides.yaml, its numbers from metrics.json, its validation curve from its TensorBoard
events. Runs that differ only in ``seed`` form one cell, reported as mean ± std over the seeds
(sample standard deviation). A run without metrics.json (crashed, killed or still running), with
``status: failed`` in it, with a non-finite loss, or whose files cannot be read (a truncated
metrics.json: ``unreadable``) is listed and marked, never dropped.

Writes into ``dir``: comparison.md (also printed), comparison.csv (one row per run, raw numbers),
comparison_cells.csv (one row per cell, mean and std; only when seeds repeat), val_acc.png (validation
accuracy per epoch, every run), test_acc_vs_params.png, test_acc_vs_macs.png and test_acc_vs_wall_time.png
(one set per data set, ``..._<data>.png``, when the runs span several). After an Optuna
search (hparams_search=...) the best trial from optimization_results.yaml is named too.

``best_of.by=<option>`` (with ``best_of.knob=<key>``, default ``optimizer.lr``) reports instead each value
of the option at its best knob value (reporting/best_of_grid.py): chosen by mean best validation accuracy
over the seeds, never on test; the winners' test accuracy is reported. It writes best_of_grid.md (also
printed), best_of_grid.json and best_of_grid_train_loss.png (each winner's train/loss per epoch) into ``dir``;
``sort``, ``ascending`` and ``group`` do not apply to it. A ``by`` or ``knob`` that no run sets gets one line
naming the keys the runs vary, and nothing is written.

Bad settings (an unknown key, a sort column that does not exist, a dir that is not one) get one line
before anything is read. Hydra writes nothing here: no run dir of its own, no .hydra/ folder, no log
(configs/compare.yaml), so the tree it reads stays as train.py left it.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from cli.commandline import entry_point
from cli.validation import check_run
from core.errors import UserError, user_errors_as_lines
from core.files import refuse_link, write_text
from reporting import best_of_grid
from reporting.comparison import (
    NUMBERS,
    OUTPUTS,
    TEXT,
    cells,
    find_runs,
    label_runs,
    markdown,
    optuna_best,
    plots,
    sort_rows,
    write_csv,
)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def check(cfg: DictConfig) -> None:
    """The settings configs/compare.yaml cannot check by itself, before anything is read."""
    if str(cfg.sort).replace("/", "_") not in (*TEXT, *NUMBERS):
        raise UserError(f"sort={cfg.sort!r} is not a column; valid: {', '.join((*TEXT, *NUMBERS))}")
    if cfg.ascending not in ("auto", True, False):
        raise UserError(f"ascending={cfg.ascending!r} is not valid; valid: auto, true, false")
    if not isinstance(cfg.group, bool):
        raise UserError(f"group={cfg.group!r} is not valid; valid: true, false")
    if not Path(cfg.dir).is_dir():
        raise UserError(f"dir={cfg.dir!r} is not a directory (a sweep dir under multirun/, or outputs/)")
    spec = cfg.best_of
    usage = "write best_of.by=<an option the sweep varies> [best_of.knob=<the key tuned for each>]"
    if spec is not None and not isinstance(spec, DictConfig):
        raise UserError(f"best_of={spec!r} is not valid; {usage}")
    for key in ("by", "knob") if spec is not None and spec.by is not None else ():
        if not isinstance(spec[key], str) or not spec[key]:
            raise UserError(f"best_of.{key}={spec[key]!r} is not a key a run overrides; {usage}")


def compare(root: Path, sort: str = "test_acc", ascending: str = "auto", group: bool = True) -> list[dict]:
    """Write and print the comparison of the runs under ``root``; returns the runs, sorted."""
    sort = sort.replace("/", "_")
    for pattern in OUTPUTS:  # all checked before the first is written: no output goes through a link
        for path in [root / pattern] if "*" not in pattern else sorted(root.glob(pattern)):
            refuse_link(path)
    runs = find_runs(root)
    if not runs:
        raise UserError(f"no training runs under {root} (a run dir holds the .hydra/ folder that train.py writes)")
    shared = label_runs(runs)
    table = sort_rows(cells(runs, group), sort, ascending)
    runs = sort_rows(runs, sort, ascending)
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


def best_of(root: Path, by: str, knob: str) -> list[dict]:
    """Write and print each value of ``by`` at its best ``knob`` (chosen on validation); returns the rows."""
    rows, table, written = best_of_grid.report(root, by, knob)
    print(table)
    print("wrote " + ", ".join(str(p) for p in written))
    return rows


@hydra.main(version_base="1.3", config_path="configs", config_name="compare")
@user_errors_as_lines  # bad input anywhere in the task: one line, exit 2 (Hydra would add a line of its own)
def main(cfg: DictConfig) -> list[dict]:
    check_run(cfg, check=check)
    if cfg.best_of is not None and cfg.best_of.by is not None:
        return best_of(Path(cfg.dir), cfg.best_of.by, cfg.best_of.knob)
    ascending = cfg.ascending if cfg.ascending == "auto" else str(cfg.ascending).lower()  # sort_rows' words
    return compare(Path(cfg.dir), str(cfg.sort), ascending, cfg.group)


if __name__ == "__main__":
    entry_point(CONFIG_DIR, main, config_name="compare")()
