"""Opening checkpoints safely.

Every load goes through ``load_checkpoint``: ``torch.load(weights_only=True)``
refuses anything but tensors and plain containers, so a checkpoint crafted
to run code when unpickled is rejected before it runs. The zoo's own
checkpoints store their configuration as plain dicts, so they pass.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .errors import UserError


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run dir -> its best checkpoint (else its last)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"ckpt_path={str(path)!r} does not exist; give a .ckpt file or a run dir with checkpoints/")
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    last = folder / "last.ckpt"
    if last.is_file():
        for state in load_checkpoint(last).get("callbacks", {}).values():
            best = Path(state.get("best_model_path") or "") if isinstance(state, dict) else Path()
            if best.name and (folder / best.name).is_file():
                return folder / best.name
        return last
    found = sorted(folder.glob("*.ckpt"))
    if not found:
        raise UserError(f"ckpt_path={str(path)!r} holds no .ckpt file (looked in {folder})")
    return found[-1]


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
    """The train.py run dir a checkpoint belongs to (the folder with .hydra/)."""
    for folder in checkpoint.resolve().parents:
        if (folder / ".hydra" / "overrides.yaml").is_file():
            return folder
    raise UserError(f"{checkpoint} is not inside a train.py run dir (no .hydra/overrides.yaml above it)")


def resume_target(target: str | Path) -> tuple[Path, Path]:
    """(checkpoint, run dir) to resume from: a checkpoint file, or a run dir's
    newest checkpoint (last.ckpt). No checkpoint is an error, never a fresh start."""
    path = Path(target)
    if not path.exists():
        raise UserError(f"resume={str(target)!r} does not exist; give a run dir or a .ckpt file")
    if path.is_dir():
        folder = path / "checkpoints"
        found = sorted(folder.glob("*.ckpt"), key=lambda p: (p.name == "last.ckpt", p.stat().st_mtime)) if folder.is_dir() else []
        if not found:
            raise UserError(f"resume={str(target)!r} has no checkpoint to resume from (nothing in {folder}); refusing to start from scratch")
        path = found[-1]
    return path.resolve(), run_dir_of(path)


def check_fits(module_state: dict, checkpoint_state: dict, checkpoint_name: str, described: str) -> None:
    """One line when a checkpoint's tensors do not fit the model built for it."""
    missing = [k for k in module_state if k not in checkpoint_state]
    unexpected = [k for k in checkpoint_state if k not in module_state]
    wrong = [k for k in module_state if k in checkpoint_state and module_state[k].shape != checkpoint_state[k].shape]
    if missing or unexpected or wrong:
        first = (f"{wrong[0]} is {tuple(checkpoint_state[wrong[0]].shape)} in the checkpoint, {tuple(module_state[wrong[0]].shape)} in the model"
                 if wrong else f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}")
        raise UserError(
            f"{checkpoint_name} does not fit {described}: {len(missing)} tensors missing, {len(unexpected)} unexpected, "
            f"{len(wrong)} of another shape (first: {first})"
        )


def check_same_length(cfg, stored: dict) -> None:
    """A resumed run keeps its learning-rate schedule, which was laid out for the run's length: a new
    ``trainer.max_epochs`` would leave the extra epochs at the schedule's end (lr 0 for a cosine)."""
    before, now = stored.get("trainer", {}).get("max_epochs"), cfg.trainer.max_epochs
    factory = cfg.scheduler.factory
    sized = factory is not None and any(key in factory and factory[key] is None for key in ("T_max", "total_steps"))
    if sized and before is not None and before != now:
        raise UserError(f"resume= with trainer.max_epochs={now}: this run's learning-rate schedule is laid out for "
                        f"{before} epochs; resume it as it was (leave trainer.max_epochs out), or train a new run "
                        f"from its weights: ckpt_path=<its checkpoint> trainer.max_epochs={now}")
