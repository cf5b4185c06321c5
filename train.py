"""Train a zoo model, then test its best checkpoint.

    python train.py                                   # ResNet-18 on CIFAR-10
    python train.py model=vgg16 optimizer=adam activation=tanh model.batchnorm=false
    python train.py experiment=smoke                  # LeNet-5 on digits, a minute on a CPU
    python train.py -m model=lenet5,resnet18 optimizer=sgd,adam   # a sweep
    python train.py resume=outputs/<run>              # continue a killed run where it stopped
    python train.py ckpt_path=outputs/<run> data=...  # a new run from that run's weights (fine-tune)

Writes into its run dir (outputs/<time>_<model>_<data>/): the resolved config
(.hydra/), checkpoints/ (best by val/acc, and last), the TensorBoard events
(this run's settings and final metrics in the HPARAMS tab too), and
metrics.json: the final val and test metrics, parameters, MACs, epochs, wall
time, throughput and status, which compare.py tabulates. Returns the value
named by ``optimized_metric`` so that Hydra sweepers can optimize it. In a
sweep (-m), a run that fails or diverges is recorded as such in its
metrics.json and the sweep goes on with the others.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from training.callbacks import DivergenceError
from training.checkpoints import check_fits, check_same_length, load_checkpoint, resolve_checkpoint
from training.device_slots import register_resolvers
from training.cli import (entry_point, fail, instantiate_trainer, is_user_error, log_to_file, message, name_sweep_runs,
                          resume_argv, user_errors_as_lines)
from training.introspection import count_parameters_and_macs
from training.errors import UserError
from training.module import ImageClassifier
from training.performance import check_precision
from training.progress import metrics_table, model_line, quiet
from training.records import flat_hparams, log_hparams, save_run_config, write_manifest, write_metrics
from training.trust import stored_config
from training.validation import check_config

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
log = logging.getLogger(__name__)
REQUIRED = {"data.root": "data.root=<a folder holding train/<class>/* and test/<class>/*>"}


def instantiate_all(group: DictConfig | None, **purge) -> list:
    """Build every ``_target_`` node of a group of named parts (callbacks, loggers); ``purge``: more
    arguments for the loggers that keep a resumed run's history (``purge_step``: training/loggers.py)."""
    return [instantiate(node, **(purge if node._target_.endswith((".TensorBoardLogger", ".CSVLogger")) else {}))
            for node in (group or {}).values() if node and "_target_" in node]


@user_errors_as_lines
def build(cfg: DictConfig) -> tuple[L.LightningDataModule, ImageClassifier, L.Trainer]:
    """Every part from its config; bad input fails here, before any download or training."""
    check_config(cfg)
    datamodule = instantiate(cfg.data)
    net = instantiate(cfg.model, num_classes=datamodule.num_classes, in_channels=datamodule.in_channels)
    loss_choice = HydraConfig.get().runtime.choices.get("loss")
    if getattr(net, "paper_loss", loss_choice) != loss_choice:
        log.warning(f"model={cfg.model.name} is fitted with loss={net.paper_loss} in its paper; this run uses loss={loss_choice}")
    module = ImageClassifier(
        net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler.factory) if cfg.scheduler.factory else None,
        scheduler_interval=cfg.scheduler.interval,
        loss=instantiate(cfg.loss),
        regularization=instantiate(cfg.regularization),
        num_classes=datamodule.num_classes,
        config=OmegaConf.to_container(cfg, resolve=True),  # plain containers: loads with weights_only=True
    )
    purge = {}
    if cfg.resume and cfg.ckpt_path:
        raise UserError("give resume= (continue a run in its dir) or ckpt_path= (a new run from its weights), not both")
    if cfg.resume:
        checkpoint = load_checkpoint(cfg.resume)
        purge = {"purge_step": checkpoint.get("global_step", 0)}  # the loggers drop what the killed run logged after it
        check_same_length(cfg, stored_config(checkpoint, cfg.resume))  # options only, as resume_argv checked
        check_fits(module.state_dict(), checkpoint["state_dict"], cfg.resume, f"model={cfg.model.name} as configured")
    if cfg.ckpt_path:  # fine-tune: the weights only; optimizer, schedule and epochs start afresh
        path = resolve_checkpoint(cfg.ckpt_path)
        checkpoint = load_checkpoint(path)
        stored_config(checkpoint, str(path))
        check_fits(module.state_dict(), checkpoint["state_dict"], str(path), f"model={cfg.model.name} as configured")
        module.load_state_dict(checkpoint["state_dict"])
    trainer_cfg = cfg.trainer
    check_precision(trainer_cfg.precision, trainer_cfg.accelerator)  # bf16 on a CPU that emulates it: refused
    if trainer_cfg.precision == "bf16-mixed" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        trainer_cfg = OmegaConf.merge(trainer_cfg, {"precision": "16-mixed"})  # pre-Ampere GPUs
    loggers = instantiate_all(cfg.logger, **purge)
    callbacks = instantiate_all(cfg.callbacks) + [instantiate(cfg.performance)]  # speed switches: training/performance.py
    trainer = instantiate_trainer(trainer_cfg, callbacks=callbacks, logger=loggers or False,
                                  enable_model_summary=cfg.verbose)  # else one line of ours (train())
    datamodule.prepare_data()  # it may download; a missing data set is reported here
    datamodule.setup("fit")  # reads and checks every image before the run dir is written to or the trainer starts
    return datamodule, module, trainer


def train(cfg: DictConfig) -> float | None:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module, trainer = build(cfg)
    log_to_file(cfg.paths.output_dir, HydraConfig.get().job.name)
    save_run_config(cfg)
    write_manifest(cfg)
    size = datamodule.image_size
    params, macs = count_parameters_and_macs(module.net, (datamodule.in_channels, size, size))  # MACs per image
    module.example_input_array = torch.zeros(1, datamodule.in_channels, size, size)  # Lightning's summary: shapes, FLOPs
    if not cfg.verbose and trainer.is_global_zero:
        print(model_line(cfg.model.name, params, macs, (datamodule.in_channels, size, size)))
    hparams = {**flat_hparams(cfg), "model/params": params, "model/macs": macs}
    for logger in trainer.loggers:  # once, at the start: a run killed later still shows its settings
        if isinstance(logger, TensorBoardLogger):
            if trainer.is_global_zero:  # other ranks' experiment is Lightning's stand-in
                log_hparams(logger.experiment, hparams)
        else:
            logger.log_hyperparams(hparams)

    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume, weights_only=True)
    except DivergenceError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this run as diverged and goes on
        if trainer.is_global_zero:
            write_metrics(cfg, {"status": "diverged", "error": str(error), "epochs": trainer.current_epoch})
        fail(str(error), status=1)
    seconds = time.perf_counter() - start
    steps = trainer.global_step - module.segment_start_step  # this segment's own: a resumed run's earlier steps took other time

    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=cfg.verbose)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})
        metrics["best_checkpoint"] = best
    finite = all(math.isfinite(metrics.get(name, 0.0)) for name in ("train/loss", "val/loss"))
    metrics.update(params=params, macs=macs, epochs=trainer.current_epoch, wall_time_s=round(seconds, 2),
                   train_images_per_s=round(steps * cfg.data.batch_size / seconds, 1),  # val included
                   status="completed" if finite else "diverged")
    for logger in trainer.loggers:
        logger.finalize("success")  # flush; the HPARAMS tab reads the metrics' last values from the curves
    if trainer.is_global_zero:
        write_metrics(cfg, metrics)  # every metric, unrounded
        print(metrics_table(metrics))
        print(f"run dir: {cfg.paths.output_dir}")
    return metrics.get(cfg.optimized_metric)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    register_resolvers()  # here, not at import: a joblib worker runs this function, not the module (trainer=gpu_sweep)
    quiet(cfg.verbose)
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return train(cfg)
    try:  # in a sweep, a failed run is recorded and the launcher goes on with the others
        return train(cfg)
    except (Exception, SystemExit) as error:  # SystemExit: a bad value, already reported; its cause is the context
        cause = error.__context__ if isinstance(error, SystemExit) and error.__context__ else error
        reason = message(cause) if is_user_error(cause) else f"{type(cause).__name__}: {message(cause)}"
        save_run_config(cfg)
        write_metrics(cfg, {"status": "diverged" if isinstance(cause, DivergenceError) else "failed", "error": reason})
        raise RuntimeError(f"run failed: {reason}") from error  # the sweep exits 1 once every run is done


if __name__ == "__main__":
    prepare = lambda argv: name_sweep_runs(resume_argv(argv), CONFIG_DIR)  # noqa: E731
    entry_point(CONFIG_DIR, main, prepare=prepare, config_name="train", required=REQUIRED)()
