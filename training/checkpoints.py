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


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run dir -> its best checkpoint (else its last)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path={str(path)!r} does not exist; give a .ckpt file or a run dir with checkpoints/")
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
        raise FileNotFoundError(f"ckpt_path={str(path)!r} holds no .ckpt file (looked in {folder})")
    return found[-1]


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load`` with ``weights_only=True`` onto the CPU, with one-line errors."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            raise ValueError(
                f"refused to load {path}: it holds objects other than tensors and plain containers "
                "(loading it could run code); only checkpoints loadable with weights_only=True are accepted"
            ) from None
        raise ValueError(f"{path} is not a readable checkpoint (corrupted or truncated): {error}") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable checkpoint (corrupted or truncated): {str(error).splitlines()[0]}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint of this project (no state_dict)")
    return checkpoint
