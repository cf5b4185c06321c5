"""Where a run writes, checked before its first write.

- ``check_run_dir``: the run dir is a folder (or can be made one) on a writable file system;
- ``claim_run_dir``: that, no symbolic link anywhere inside it (no write may follow one), and one
  process per run dir (``core.files.hold_run_dir``), taken once the command passed every check,
  so a refused command writes nothing into an existing run dir;
- ``check_run_dir_arguments``: ``hydra.run.dir=`` on the command line, checked before Hydra creates
  it (Hydra's own failure there is a traceback).
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import UserError
from core.files import hold_run_dir, refuse_links_inside


def check_run_dir(folder: str | Path, what: str = "run dir") -> None:
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {folder} is a file, not a folder; give a folder (hydra.run.dir=<folder>)")
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what} {folder} cannot be created: {probe} is a file, not a folder")
    read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    if read_only or not os.access(probe, os.W_OK | os.X_OK):
        reason = "a read-only file system" if read_only else "not writable (permission denied)"
        raise UserError(f"{what} {folder} cannot be written: {probe} is {reason}; give a writable folder "
                        "(hydra.run.dir=<folder>)")


def claim_run_dir(folder: str | Path, rank: int = 0) -> None:
    """Before a run's first write into ``folder``: writable, no link inside, this process's alone (``rank`` 0
    of a multi-process run takes the lock; the processes Lightning starts for the other ranks share it)."""
    folder = Path(folder)
    check_run_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    refuse_links_inside(folder)
    if rank == 0:
        hold_run_dir(folder)


def check_run_dir_arguments(argv: list[str]) -> None:
    """An explicit ``hydra.run.dir=<folder>`` (a plain path) that is a file or lies on a read-only file
    system: one line before Hydra tries to create it."""
    for arg in argv:
        if arg.startswith("hydra.run.dir=") and "${" not in arg:
            value = arg.split("=", 1)[1].strip("'\"")
            if value:
                check_run_dir(value)
