"""What a training run records about itself, beside its checkpoints: Hydra's
.hydra/ folder (written once the config is valid), metrics.json (with a failed
sweep run's reason: ``record_failure``), manifest.json, and the flat settings
that TensorBoard's HPARAMS tab shows next to the final metrics; and, read back
without torch, the model a run dir or weights card names (``model_of``)."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from core.errors import first_line, is_user_error, user_error_in
from core.files import safe_name, write_json, write_text
from reporting.manifest import manifest

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# TensorBoard's HPARAMS tab: the option chosen in each group below, these knobs and every key the run overrides
HPARAMS = ("optimizer.lr", "optimizer.weight_decay", "optimizer.momentum", "data.batch_size", "data.augment",
           "model.dropout", "model.batchnorm", "regularization.strength", "trainer.max_epochs", "seed", "tags")
# groups and keys that say where and how fast a run went, not what it learned: never in HPARAMS
NOT_HPARAMS = ("hydra", "paths", "performance", "callbacks", "logger", "recipe")  # recipe: the model's name again


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


def rank_zero_only(function):
    """Lightning's ``rank_zero_only``, imported when called: importing this module needs no torch."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from lightning.pytorch.utilities import rank_zero_only as on_rank_zero

        return on_rank_zero(function)(*args, **kwargs)

    return wrapper


def flat_hparams(cfg: DictConfig) -> dict:
    """Flat scalars for TensorBoard's HPARAMS tab, which shows no nested config: each group's chosen
    option (``model: lenet5``), the knobs of ``HPARAMS`` and every key the command line set, never a
    ``_target_``-like key nor one of ``NOT_HPARAMS``."""
    hydra_cfg = HydraConfig.get()
    flat = {group: choice for group, choice in hydra_cfg.runtime.choices.items()
            if choice and "/" not in group and group not in NOT_HPARAMS}
    overridden = [override.split("=", 1)[0].lstrip("+~") for override in hydra_cfg.overrides.task]
    for key in (*HPARAMS, *overridden):
        parts = key.split(".")
        if key in flat or parts[0] in NOT_HPARAMS or any(part.startswith("_") for part in parts):
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, ListConfig):
            value = ",".join(map(str, value)) or None  # tags=[a,b] -> "a,b"; none: no column
        if isinstance(value, (bool, int, float, str)):
            flat[key] = value
    return flat


def trial_id() -> str:
    """The run's name in HPARAMS' trial-id column, which cuts names to about 15 characters: what sets the run
    apart first, the time last. A single run: its dir (``lenet5_digits_2026-12-02_12-00-00``); a sweep's run: its
    dir, then its sweep's (``optimizer=adam,seed=2_2026-12-02_12-00-00``), unique across sweeps in one view
    (runs with one id would share a row)."""
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run = Path(hydra_cfg.runtime.output_dir)
    return f"{run.name}_{Path(hydra_cfg.sweep.dir).name}" if hydra_cfg.mode == RunMode.MULTIRUN else run.name


def log_settings(trainer, hparams: dict) -> None:
    """The run's settings, once, at its start (a run killed later still shows them): TensorBoard's
    HPARAMS tab through ``log_hparams``, any other logger through its own ``log_hyperparams``."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams)
        elif trainer.is_global_zero:  # other ranks' experiment is Lightning's stand-in
            log_hparams(logger.experiment, hparams, trial_id())


def log_hparams(writer, hparams: dict, trial: str = "") -> None:
    """The run's settings into TensorBoard's HPARAMS tab, as a session start only, booleans as booleans and
    ``trial`` as its trial id (the session group's name). How TensorBoard 2.21 chooses the columns it shows
    (tensorboard/plugins/hparams): without an experiment summary it builds them from every run in view, marks
    those whose values differ, sorts them first (then by name) and ticks the first five; an experiment summary,
    as Lightning writes one, is read from one run alone, and its columns then stand for every run. So no run
    writes one, and no column repeats another (parameters and MACs follow the model: metrics.json and
    compare.py have them): what a sweep varies is among the five ticked. The metric columns are the runs'
    scalar tags, in name order (training/loggers.py puts loss and accuracy first)."""
    import time

    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(group_name=trial, start_time_secs=time.time())
    for name, value in hparams.items():
        if isinstance(value, bool):  # before int: a bool is an int, and torch's helper wrote 1.0
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = value
        else:
            start.hparams[name].string_value = str(value)
    content = plugin_data_pb2.HParamsPluginData(session_start_info=start, version=metadata.PLUGIN_DATA_VERSION)
    summary = Summary(value=[Summary.Value(tag=metadata.SESSION_START_INFO_TAG,
                                           metadata=metadata.create_summary_metadata(content))])
    writer.file_writer.add_summary(summary)
    writer.flush()


@rank_zero_only
def save_run_config(cfg: DictConfig) -> None:
    """Hydra's .hydra/ record, written only once the config is valid (hydra.output_subdir is null):
    a bad command aimed at an existing run dir, or a failed resume, leaves that run's record untouched."""
    hydra_cfg = HydraConfig.get()
    folder = Path(hydra_cfg.runtime.output_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text(folder / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
    write_text(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(hydra_cfg.overrides.task))))


def write_metrics(cfg: DictConfig, metrics: dict) -> None:
    write_json(Path(cfg.paths.output_dir) / "metrics.json", metrics)


def run_status(cfg: DictConfig, metrics: dict) -> str:
    """A finished run's status in metrics.json: ``diverged`` when a final loss is not finite, ``debug`` for a
    debugging run whose numbers compare with nothing (one batch of each split, or the same few batches over and
    over: ``trainer.fast_dev_run``, ``trainer.overfit_batches``), else ``completed``."""
    import math

    if not all(math.isfinite(metrics.get(name, 0.0)) for name in ("train/loss", "val/loss")):
        return "diverged"
    return "debug" if cfg.trainer.get("fast_dev_run") or cfg.trainer.get("overfit_batches") else "completed"


def record_failure(cfg: DictConfig, error: BaseException) -> None:
    """A sweep's run that failed: it says so as a single run would, in one line on stderr (a bad value's
    line is printed already; a bug keeps its traceback, printed once), and its config and metrics.json
    (status failed or diverged, and why) are written. The launcher goes on with the other runs;
    ``SweepSummary`` names every failed run once the sweep is done."""
    import traceback

    from training.callbacks import DivergenceError

    cause = error.__context__ if isinstance(error, SystemExit) and error.__context__ else error  # a bad value, reported
    diverged = isinstance(cause, DivergenceError)
    text = first_line(user_error_in(cause) or cause)
    reason = text if is_user_error(cause) or diverged else f"{type(cause).__name__}: {text}"
    if diverged:
        print(f"error: {reason}", file=sys.stderr)
    elif not isinstance(error, SystemExit) and not is_user_error(cause):
        traceback.print_exception(cause)  # a bug: its traceback, once
    elif not isinstance(error, SystemExit):
        print(f"error: {reason}", file=sys.stderr)
    save_run_config(cfg)
    write_metrics(cfg, {"status": "diverged" if diverged else "failed", "error": reason})


class SweepSummary(Callback):
    """After a sweep (``-m``): one line per run that did not complete, read back from the runs' metrics.json,
    and exit status 1 when there was one (configs/hydra/default.yaml names it in ``hydra.callbacks``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from reporting.comparison import find_runs

        sweep_dir = Path(config.hydra.sweep.dir)
        runs = find_runs(sweep_dir) if sweep_dir.is_dir() else []
        failed = [run for run in runs if run["status"] in ("failed", "diverged", "unreadable")]
        if not failed:
            return
        print(f"error: {len(failed)} of {len(runs)} runs of the sweep did not complete "
              f"(python compare.py dir={sweep_dir} lists them all):", file=sys.stderr)
        for run in failed:
            print(f"  {run['run']}: {run['status']}: {run['error']}", file=sys.stderr)
        sys.exit(1)


@rank_zero_only
def write_manifest(cfg: DictConfig) -> None:
    """manifest.json: software, hardware, commit and command line of the run; a resumed run keeps its
    first start's record and lists each resume's own under ``resumes``."""
    path = Path(cfg.paths.output_dir) / "manifest.json"
    current = {**manifest(seed=cfg.seed), "tags": list(cfg.get("tags") or [])}
    if cfg.resume and path.is_file():
        try:
            first = json.loads(path.read_text())
        except (OSError, ValueError):
            first = None
        if isinstance(first, dict):
            current = {**first, "resumes": [*first.get("resumes", []), current]}
    write_json(path, current)
