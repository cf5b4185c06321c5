"""The OmegaConf resolvers our configs use, registered by the entry points, never at import.

``configs/hydra/default.yaml`` names run and sweep dirs with ``unique_dir`` and
``run_dirname``; ``trainer=gpu_sweep`` picks its device with ``device_slot``
(core/device_slots.py). Every entry point calls ``register_resolvers()`` (through
``cli.commandline.entry_point``) before Hydra composes. A parallel sweep runs the
task function in joblib's worker processes, which never run the entry point: there
Hydra resolves the run's dir before calling the function, so a task function that
names ``RESOLVERS`` carries them along, and unpickling it in a worker registers them.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from core.errors import UserError
from core.files import run_dirname, safe_name, unique_dir

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def run_dir(resume: str | None, default: str) -> str:
    """train.py's run dir (configs/train.yaml): for ``resume=<run dir or checkpoint>`` that run's own dir, the
    folder above it holding .hydra/overrides.yaml (a resumed run continues where it was); otherwise
    ``unique_dir(default)``, as is a resume target that is not in a run dir (train.py then says why)."""
    if resume not in (None, ""):
        from training.checkpoints import run_dir_of  # torch: only when resuming, which loads a checkpoint anyway

        try:
            return str(run_dir_of(resume))
        except UserError:
            pass
    return unique_dir(default)


def model_of(ckpt_path: str | None, weights: str | None) -> str:
    """The model name for the run dir (configs/evaluate.yaml), read without torch from the checkpoint's
    run dir (.hydra/config.yaml) or the weights' card; "model" when neither says (build() reports why).
    What a run dir or card stores is data: the name is cut to letters, digits and ``-_.`` (``safe_name``),
    so it stays one folder-name part, never a path (``/../..``) nor an interpolation (``${...}``)."""
    try:
        if weights:
            text = str(weights)
            card = (Path(text).with_suffix(".json") if text.endswith((".pth", ".pt", ".json")) or "/" in text
                    else WEIGHTS_DIR / f"{text}.json")
            return safe_name(json.loads(card.read_text())["model"]["name"])
        if ckpt_path:
            path = Path(ckpt_path).resolve()
            for folder in (path, *path.parents):
                if (folder / ".hydra" / "config.yaml").is_file():
                    return safe_name(yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())["model"]["name"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        pass
    return "model"


def sweep_run() -> str:
    """In a sweep (-m), this run's name (its dir: ``optimizer=adam,seed=2``), so that lines of runs that run side by
    side (hydra/launcher=joblib) say whose they are; "" for a single run (configs/callbacks/default.yaml)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return ""
    return Path(HydraConfig.get().runtime.output_dir).name


def register_resolvers() -> None:
    from core.device_slots import device_slot

    OmegaConf.register_new_resolver("run_dirname", run_dirname, replace=True)  # hydra/default.yaml's sweep.subdir
    OmegaConf.register_new_resolver("unique_dir", unique_dir, replace=True, use_cache=True)  # its run.dir, sweep.dir
    OmegaConf.register_new_resolver("run_dir", run_dir, replace=True, use_cache=True)  # train.yaml: resume's dir
    OmegaConf.register_new_resolver("device_slot", device_slot, replace=True)  # trainer=gpu_sweep's devices
    OmegaConf.register_new_resolver("sweep_run", sweep_run, replace=True)  # callbacks/default.yaml's epoch_log.run
    # evaluate.yaml's run dir: the model, before torch
    OmegaConf.register_new_resolver("model_of", model_of, replace=True)


class Resolvers:
    """A handle a task function names (``RESOLVERS.register()``) so that pickling it for a
    joblib worker takes the registration along: unpickling calls ``_registered``."""

    def register(self) -> None:
        register_resolvers()

    def __reduce__(self):
        return _registered, ()


def _registered() -> Resolvers:
    register_resolvers()
    return RESOLVERS


RESOLVERS = Resolvers()
