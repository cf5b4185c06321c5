"""Train a zoo model, then test its best checkpoint.

    python train.py                                   # ResNet-18 on CIFAR-10
    python train.py model=vgg16 optimizer=adam activation=tanh model.batchnorm=false
    python train.py experiment=smoke                  # LeNet-5 on digits, a minute on a CPU
    python train.py -m model=lenet5,resnet18 optimizer=sgd,adam   # a sweep
    python train.py resume=outputs/<run>              # continue a killed run where it stopped

Writes into its run dir (outputs/<time>_<model>_<data>/): the resolved config (.hydra/),
checkpoints/ (best by val/acc, and last), the TensorBoard events (settings and final metrics in
HPARAMS too) and metrics.json (final metrics, parameters, MACs, epochs, wall time, throughput,
status: what compare.py tabulates). Returns ``optimized_metric`` for Hydra's sweepers; in a sweep
(-m) a run that fails or diverges is recorded as such and the sweep goes on with the others.
Only hydra, omegaconf and cli/ are imported at the top: --help, --cfg, shell completion and every
check of the command line run before torch and Lightning are imported (inside build() and train()).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from cli.commandline import entry_point, fail, instantiate_all, instantiate_trainer, log_to_file, resume_argv, user_errors_as_lines
from cli.records import flat_hparams, record_failure, save_run_config, write_manifest, write_metrics
from cli.resolvers import RESOLVERS
from cli.trust import stored_config
from cli.validation import check_config

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
HPARAM_METRICS = ("val/acc_best", "val/acc", "val/loss", "test/acc", "test/loss")  # in HPARAMS, as hp/val_acc_best, ...
REQUIRED = {"data.root": "data.root=<a folder holding train/<class>/* and test/<class>/*>"}


@user_errors_as_lines
def build(cfg: DictConfig) -> tuple[L.LightningDataModule, ImageClassifier, L.Trainer]:
    """Every part from its config; bad input fails here, before any download or training."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    from training.checkpoints import check_fits, load_checkpoint
    from training.module import ImageClassifier
    from training.performance import usable_precision

    check_config(cfg)
    datamodule = instantiate(cfg.data)
    net = instantiate(cfg.model, num_classes=datamodule.num_classes, in_channels=datamodule.in_channels)
    loss_choice = HydraConfig.get().runtime.choices.get("loss")
    if getattr(net, "paper_loss", loss_choice) != loss_choice:
        logging.getLogger(__name__).warning(f"model={cfg.model.name} is fitted with loss={net.paper_loss} in its paper; this run uses loss={loss_choice}")
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
    if cfg.resume:
        checkpoint = load_checkpoint(cfg.resume)
        purge = {"purge_step": checkpoint.get("global_step", 0)}  # TensorBoard drops what the killed run logged after it
        stored_config(checkpoint, cfg.resume)  # options only, as resume_argv checked; here too for callers of build()
        check_fits(module.state_dict(), checkpoint["state_dict"], cfg.resume, f"model={cfg.model.name} as configured")
    loggers = instantiate_all(cfg.logger, **purge)
    callbacks = instantiate_all(cfg.callbacks) + [instantiate(cfg.performance)]  # speed switches: training/performance.py
    if not loggers:  # logger=none: nothing to monitor the learning rate into
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    precision = usable_precision(cfg.trainer.precision, cfg.trainer.accelerator)  # bf16: refused on a CPU that emulates it
    trainer = instantiate_trainer(cfg.trainer, precision=precision, callbacks=callbacks, logger=loggers or False)
    datamodule.prepare_data()  # it may download; a missing data set is reported here
    datamodule.setup("fit")  # reads and checks every image before the run dir is written to or the trainer starts
    return datamodule, module, trainer


def train(cfg: DictConfig) -> float | None:
    import lightning as L
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger

    from analysis.introspection import count_parameters_and_macs
    from training.callbacks import DivergenceError

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module, trainer = build(cfg)
    log_to_file(cfg.paths.output_dir, HydraConfig.get().job.name)
    save_run_config(cfg)
    write_manifest(cfg)
    size = datamodule.image_size
    params, macs = count_parameters_and_macs(module.net, (datamodule.in_channels, size, size))  # MACs per image
    module.example_input_array = torch.zeros(1, datamodule.in_channels, size, size)  # Lightning's summary: shapes, FLOPs
    for logger in trainer.loggers:
        logger.log_hyperparams({**module.hparams.config, "model/params": params, "model/macs": macs})

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
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})
        metrics["best_checkpoint"] = best
    finite = all(math.isfinite(metrics.get(name, 0.0)) for name in ("train/loss", "val/loss"))
    metrics.update(params=params, macs=macs, epochs=trainer.current_epoch, wall_time_s=round(seconds, 2),
                   train_images_per_s=round(steps * cfg.data.batch_size / seconds, 1),  # val included
                   status="completed" if finite else "diverged")
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # the HPARAMS tab: the settings next to the final metrics
            final = {"hp/" + name.replace("/", "_"): metrics[name] for name in HPARAM_METRICS if name in metrics}
            logger.log_hyperparams({**flat_hparams(cfg), "model/params": params, "model/macs": macs}, final, step=trainer.global_step)
            logger.finalize("success")
    if trainer.is_global_zero:
        write_metrics(cfg, metrics)
        print("final metrics: " + json.dumps({k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}))
    return metrics.get(cfg.optimized_metric)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    RESOLVERS.register()  # named here, so that joblib's workers, which run this function and not the module, get them
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return train(cfg)
    try:  # in a sweep, a failed run is recorded and the launcher goes on with the others
        return train(cfg)
    except (Exception, SystemExit) as error:  # SystemExit: a bad value, already reported
        raise record_failure(cfg, error) from error  # the sweep exits 1 once every run is done


if __name__ == "__main__":
    entry_point(CONFIG_DIR, main, prepare=resume_argv, config_name="train", required=REQUIRED)()
