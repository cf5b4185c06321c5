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

from pathlib import Path

import yaml
from omegaconf import OmegaConf

from core.errors import UserError
from core.files import run_dirname, unique_dir


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


def sweep_subdir(override_dirname: str) -> str:
    """A sweep run's folder (configs/hydra/default.yaml ``sweep.subdir``), named by what sets it apart: the
    overrides the sweep varies (``model=lenet5,optimizer=sgd``), not those every run shares
    (``experiment=smoke``), which each run's .hydra/overrides.yaml keeps. Hydra computes each run's
    ``override_dirname`` from that run's overrides alone; what the sweep varies is what its command swept
    (the sweep dir's multirun.yaml, which Hydra's basic sweeper saves before the first run) and its sweeper's
    ``params`` (an experiment's seeds, an Optuna search space). Where neither says, or the command sets
    ``hydra.job.config.override_dirname.exclude_keys`` itself, Hydra's ``override_dirname`` as it is."""
    from hydra.core.hydra_config import HydraConfig

    from reporting.trust import parse_overrides

    hydra_cfg = HydraConfig.get()
    swept = set((OmegaConf.select(hydra_cfg, "sweeper.params", default=None) or {}).keys())
    try:
        command = yaml.safe_load((Path(hydra_cfg.sweep.dir) / "multirun.yaml").read_text())["hydra"]["overrides"]
        swept |= {o.key_or_group for o in parse_overrides(command["task"]) if o.is_sweep_override()}
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        pass
    own = any(o.startswith(("hydra.job.config.override_dirname", "+hydra.job.config.override_dirname"))
              for o in hydra_cfg.overrides.hydra)
    if not swept or own:
        return run_dirname(override_dirname)
    excluded = set(hydra_cfg.job.config.override_dirname.exclude_keys)
    chosen = [o for o in parse_overrides(list(hydra_cfg.overrides.task))
              if o.key_or_group in swept and o.key_or_group not in excluded]
    return run_dirname(",".join(sorted(f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in chosen)))


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

    OmegaConf.register_new_resolver("sweep_subdir", sweep_subdir, replace=True)  # hydra/default.yaml's sweep.subdir
    OmegaConf.register_new_resolver("unique_dir", unique_dir, replace=True, use_cache=True)  # its run.dir, sweep.dir
    OmegaConf.register_new_resolver("run_dir", run_dir, replace=True, use_cache=True)  # train.yaml: resume's dir
    from reporting.records import model_of

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
