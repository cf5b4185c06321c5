"""Opening and writing checkpoints safely.

Every load goes through ``load_checkpoint``: ``torch.load(weights_only=True)``
refuses anything but tensors and plain containers, so a checkpoint crafted
to run code when unpickled is rejected before it runs. The zoo's own
checkpoints store their configuration as plain dicts, so they pass.

Lightning writes, reads back and deletes checkpoints through its
``CheckpointIO``; ``RunCheckpointIO`` is that for one run's checkpoint dir:
every save is atomic on the checkpoint dir's own file system
(``core/files.py``), a delete touches only a plain file inside that dir,
and a loaded checkpoint's ``ModelCheckpoint`` state (``best_model_path``,
``kth_best_model_path``, ``last_model_path``, ``best_k_models``, ``dirpath``)
is checked before Lightning sees it: a state naming any path outside the
dir is dropped, with one line, so Lightning never deletes what it names.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from core.errors import UserError
from core.files import atomic_write, refuse_links_inside

log = logging.getLogger(__name__)
PATH_KEYS = ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run dir -> its best checkpoint (else its last, else its newest intact one)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"ckpt_path={str(path)!r} does not exist; give a .ckpt file or a run dir with checkpoints/")
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    last = folder / "last.ckpt"
    if last.is_file():
        try:
            states = load_checkpoint(last).get("callbacks", {}).values()
        except UserError:
            states = []  # damaged: the newest intact checkpoint below
        for state in states:
            best = state.get("best_model_path") if isinstance(state, dict) else None
            best = Path(best if isinstance(best, str) else "")
            if best.name.endswith(".ckpt") and (folder / best.name).is_file():
                return folder / best.name  # only its name is read: the file beside last.ckpt
    found = newest_intact(folder, f"ckpt_path={str(path)!r}")[0]
    return found


def checkpoints_newest_first(folder: Path) -> list[Path]:
    """The ``.ckpt`` files of ``folder``: ``last.ckpt`` first, then the others by modification time, newest first."""
    found = [p for p in folder.glob("*.ckpt") if p.is_file()] if folder.is_dir() else []
    return sorted(found, key=lambda p: (p.name == "last.ckpt", p.stat().st_mtime), reverse=True)


def newest_intact(folder: Path, what: str) -> tuple[Path, dict]:
    """(path, loaded checkpoint) of the newest checkpoint in ``folder`` that loads; when the newest does not
    (a kill or a full disk cut it short), one line says which one is used instead."""
    found = checkpoints_newest_first(folder)
    if not found:
        raise UserError(f"{what} has no checkpoint (nothing in {folder}); refusing to start from scratch")
    damaged = []
    for path in found:
        try:
            checkpoint = load_checkpoint(path)
        except UserError as error:
            damaged.append((path, str(error)))
            continue
        if damaged:
            log.warning(f"{damaged[0][0]} is not readable ({damaged[0][1].split(': ', 1)[-1]}); using {path.name}, "
                        f"the newest intact checkpoint of {folder}")
        return path, checkpoint
    raise UserError(f"{what}: no checkpoint in {folder} is readable (first: {damaged[0][1]})")


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load`` with ``weights_only=True`` onto the CPU, with one-line errors."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            raise UserError(
                f"refused to load {path}: it holds objects other than tensors and plain containers "
                "(loading it could run code); only checkpoints loadable with weights_only=True are accepted"
            ) from None
        reason = (str(error).strip().splitlines() or ["UnpicklingError"])[0]
        raise UserError(f"{path} is not a readable checkpoint (corrupted or truncated): {reason}") from None
    except Exception as error:  # noqa: BLE001 -- random bytes fail deep in the unpickler (IndexError, KeyError, EOFError ...)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{path} is not a readable checkpoint (corrupted or truncated): {reason}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a Lightning checkpoint of this project (no state_dict)")
    return checkpoint


def run_dir_of(checkpoint: Path) -> Path:
    """The train.py run dir a checkpoint (or a folder of a run) belongs to: the folder with .hydra/ above it,
    found by the path as given (a link on the way is the run dir's to refuse, not followed out of it)."""
    checkpoint = Path(os.path.abspath(checkpoint))
    for folder in (checkpoint, *checkpoint.parents) if checkpoint.is_dir() else checkpoint.parents:
        if (folder / ".hydra" / "overrides.yaml").is_file():
            return folder
    raise UserError(f"{checkpoint} is not inside a train.py run dir (no .hydra/overrides.yaml above it)")


def resume_target(target: str | Path) -> tuple[Path, Path, dict]:
    """(checkpoint, run dir, the loaded checkpoint) to resume from: a checkpoint file, or a run dir's
    newest intact checkpoint (last.ckpt, unless a kill or a full disk damaged it: then the newest that
    loads, named in one line). No checkpoint is an error, never a fresh start."""
    path = Path(os.path.abspath(target))
    if not path.exists():
        raise UserError(f"resume={str(target)!r} does not exist; give a run dir or a .ckpt file")
    if path.is_dir() and not checkpoints_newest_first(path / "checkpoints"):
        raise UserError(f"resume={str(target)!r} has no checkpoint to resume from (nothing in {path / 'checkpoints'}); "
                        "refusing to start from scratch")
    run_dir = run_dir_of(path)
    refuse_links_inside(run_dir)  # it writes there: no link may lead its writes out
    if path.is_dir():
        path, checkpoint = newest_intact(path / "checkpoints", f"resume={str(target)!r}")
    else:
        checkpoint = load_checkpoint(path)
    return path, run_dir, checkpoint


def check_fits(module_state: dict, checkpoint_state: dict, checkpoint_name: str, described: str) -> None:
    """One line when a checkpoint's tensors do not fit the model built for it."""
    missing = [k for k in module_state if k not in checkpoint_state]
    unexpected = [k for k in checkpoint_state if k not in module_state]
    wrong = [k for k in module_state if k in checkpoint_state and module_state[k].shape != checkpoint_state[k].shape]
    if missing or unexpected or wrong:
        first = (f"{wrong[0]} is {tuple(checkpoint_state[wrong[0]].shape)} in the checkpoint, "
                 f"{tuple(module_state[wrong[0]].shape)} in the model"
                 if wrong else f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}")
        raise UserError(
            f"{checkpoint_name} does not fit {described}: {len(missing)} tensors missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} of another shape (first: {first})"
        )


def warn_non_finite(state: dict, source: object) -> list[str]:
    """One warning line when a checkpoint holds NaN or infinite weights (a diverged run's): its
    predictions mean nothing. Returns the names of those tensors."""
    bad = [name for name, value in state.items()
           if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        log.warning(f"{source} holds non-finite weights (NaN or inf in {len(bad)} of {len(state)} tensors, "
                    f"first {bad[0]}); its predictions mean nothing: the run diverged, evaluate an earlier checkpoint")
    return bad


def inside(path: object, folders: list[Path]) -> Path | None:
    """``path`` resolved (links and ``..`` followed, relative to the working dir as Lightning reads it),
    if it lies strictly inside one of ``folders``; None for anything else, a URL (``local://``) included."""
    if not isinstance(path, (str, Path)) or not str(path) or "://" in str(path):
        return None
    resolved = Path(os.path.realpath(path))
    return resolved if any(folder in resolved.parents for folder in folders) else None


def outside_paths(state: dict, folders: list[Path]) -> list[str]:
    """``key=value`` for each path of a ``ModelCheckpoint`` state that does not lie inside ``folders``."""
    bad = []
    for key in PATH_KEYS:
        value = state.get(key)
        if key == "dirpath":
            ok = value is None or (isinstance(value, str) and "://" not in value
                                   and Path(os.path.realpath(value)) in folders)
        else:
            ok = value in (None, "") or inside(value, folders) is not None
        if not ok:
            bad.append(f"{key}={value!r}")
    models = state.get("best_k_models", {})
    if not isinstance(models, dict):
        bad.append(f"best_k_models={models!r}")
    else:
        bad += [f"best_k_models key {key!r}" for key in models if inside(key, folders) is None]
    return bad


def drop_outside_state(checkpoint: dict, folders: list[Path], source: object) -> list[str]:
    """Drop every callback state of ``checkpoint`` that names a checkpoint path outside ``folders`` (the
    run's own checkpoint dir), so that Lightning, which deletes the files such a state names, never sees
    it; one line per dropped state. Returns the keys dropped."""
    callbacks = checkpoint.get("callbacks")
    if not isinstance(callbacks, dict):
        return []
    dropped = []
    for key, state in list(callbacks.items()):
        if not isinstance(state, dict) or not any(k in state for k in (*PATH_KEYS, "best_k_models")):
            continue
        bad = outside_paths(state, folders)
        if bad:
            del callbacks[key]
            dropped.append(key)
            where = ", ".join(str(f) for f in folders) or "no checkpoint dir"
            log.warning(f"{source}: its checkpoint-callback state names {bad[0]}"
                        f"{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}, outside this run's checkpoint dir "
                        f"({where}); that state is dropped and nothing it names is deleted (a moved run "
                        "dir does this too)")
    return dropped


class RunCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO for one run: ``folders`` are its checkpoint dirs (the ModelCheckpoint
    callbacks' ``dirpath``). Saves are atomic on the checkpoint dir's own file system (a partial file never
    carries a ``.ckpt`` name; a full disk is one line and leaves the earlier checkpoints as they were),
    deletes touch plain files inside ``folders`` only, and a loaded checkpoint's callback state is checked
    (``drop_outside_state``) before Lightning restores it."""

    def __init__(self, folders: list[str | Path]) -> None:
        super().__init__()
        self.folders = list(dict.fromkeys(Path(os.path.realpath(folder)) for folder in folders))

    @classmethod
    def of(cls, callbacks: list) -> RunCheckpointIO:
        """For the checkpoint dirs of the ``ModelCheckpoint`` callbacks among ``callbacks``."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        return cls([c.dirpath for c in callbacks if isinstance(c, ModelCheckpoint) and c.dirpath])

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: torch.save(checkpoint, handle))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        checkpoint = super().load_checkpoint(path, map_location=map_location or (lambda storage, loc: storage),
                                             weights_only=weights_only)
        drop_outside_state(checkpoint, self.folders, path)
        return checkpoint

    def remove_checkpoint(self, path) -> None:
        target = inside(path, self.folders)
        if target is None or os.path.islink(path) or not target.is_file():
            log.warning(f"refused to delete {path!s}: only a checkpoint file inside "
                        f"{', '.join(map(str, self.folders))} is ever deleted")
            return
        target.unlink()
