"""Train a zoo model, then test its best checkpoint.

    python train.py                                   # ResNet-18 on CIFAR-10
    python train.py model=vgg16 optimizer=adam activation=tanh model.batchnorm=false
    python train.py experiment=smoke                  # LeNet-5 on digits, a minute on a CPU
    python train.py -m model=lenet5,resnet18 optimizer=sgd,adam   # a sweep
    python train.py resume=outputs/<run>              # continue a killed run where it stopped
    python train.py ckpt_path=outputs/<run> data=...  # a new run from that run's weights (fine-tune)

Writes into its run dir (outputs/<model>_<data>_<time>/): the resolved config (.hydra/),
checkpoints/ (best by val/acc, and last), the TensorBoard events (settings and final metrics in
HPARAMS too) and metrics.json (final metrics, parameters, MACs, epochs, wall time, throughput,
status: what compare.py tabulates). Returns ``optimized_metric`` for Hydra's sweepers; in a sweep
(-m) a run that fails or diverges is recorded as such and the sweep goes on with the others.
Only hydra, omegaconf and cli/ are imported at the top: --help, --cfg, shell completion and every
check of the command line run before torch and Lightning are imported (inside build() and train()).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cli.commandline import entry_point, instantiate_all, instantiate_part, instantiate_trainer
from cli.resolvers import RESOLVERS
from cli.validation import check_run
from core.errors import fail, user_errors_as_lines
from core.files import log_to_file
from core.rundir import claim_run_dir
from reporting.records import (
    flat_hparams,
    log_settings,
    record_failure,
    run_status,
    save_run_config,
    write_manifest,
    write_metrics,
)
from reporting.trust import resume_config, start_from

if TYPE_CHECKING:  # annotations only: torch and Lightning are imported after the command line is checked
    import lightning as L

    from training.module import ImageClassifier

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
REQUIRED = {"data.root": "data.root=<a folder holding train/<class>/* and test/<class>/*>"}


@user_errors_as_lines
def build(cfg: DictConfig) -> tuple[L.LightningDataModule, ImageClassifier, L.Trainer]:
    """Every part from its config, seeded; bad input fails here, before any download or training."""
    # resume=: the run's own config again, from its own overrides and those given now; purge_step for the loggers
    purge = resume_config(cfg) if cfg.resume else {}
    check_run(cfg, REQUIRED)  # before torch is imported: a bad seed, trainer.* or callbacks.* value answers in a second
    import lightning as L

    from training.checkpoints import RunCheckpointIO  # atomic saves; deletes inside the run's checkpoint dir only
    from training.module import ImageClassifier
    from training.progress import quiet

    quiet(cfg.verbose)  # before the Trainer is built: its banners
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    net = instantiate_part(cfg.model, "model", num_classes=datamodule.num_classes,
                           in_channels=datamodule.in_channels).train()  # weights= return it in eval mode
    with open_dict(cfg.model):  # a null option is the builder's default (or the weights' card's): recorded as built
        cfg.model.update({key: net.built_with[key] for key in cfg.model if cfg.model[key] is None
                          and key in net.built_with})
    loss_choice = HydraConfig.get().runtime.choices.get("loss")
    if getattr(net, "paper_loss", loss_choice) != loss_choice:
        logging.getLogger(__name__).warning(f"model={cfg.model.name} is fitted with loss={net.paper_loss} in its "
                                            f"paper; this run uses loss={loss_choice}")
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
    loggers = instantiate_all(cfg.logger, **purge)
    callbacks = instantiate_all(cfg.callbacks) + [instantiate(cfg.performance)]  # training/performance.py's switches
    # precision: auto resolved, bf16 checked; the model summary: ours (train())
    trainer = instantiate_trainer(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                  enable_model_summary=cfg.verbose, plugins=[RunCheckpointIO.of(callbacks)])
    start_from(cfg, module)  # resume= or ckpt_path=: checked, a fine-tune's weights loaded
    datamodule.prepare_data()  # it may download; a missing data set is reported here
    datamodule.setup("fit")  # reads and checks every image before the run dir is written to or the trainer starts
    return datamodule, module, trainer


@user_errors_as_lines  # a write that fails (full disk, read-only) anywhere in the run: one line
def train(cfg: DictConfig) -> float | None:
    datamodule, module, trainer = build(cfg)
    import torch
    from lightning.pytorch.utilities.rank_zero import rank_zero_only  # rank: RANK, LOCAL_RANK or SLURM_PROCID

    from analysis.introspection import count_parameters_and_macs
    from core.files import WriteError
    from training.callbacks import DivergenceError
    from training.performance import precision_line
    from training.progress import metrics_table, model_line

    claim_run_dir(cfg.paths.output_dir, rank_zero_only.rank)  # writable, no link inside, one run per run dir
    log_to_file(cfg.paths.output_dir, HydraConfig.get().job.name)
    save_run_config(cfg)
    write_manifest(cfg)
    size = datamodule.image_size
    params, macs = count_parameters_and_macs(module.net, (datamodule.in_channels, size, size))  # MACs per image
    module.example_input_array = torch.zeros(1, datamodule.in_channels, size, size)  # Lightning summary: shapes, FLOPs
    if not cfg.verbose and trainer.is_global_zero:
        print(model_line(cfg.model.name, params, macs, (datamodule.in_channels, size, size)))
        if cfg.trainer.precision == "auto":  # what it chose here, and why
            print(precision_line(cfg.trainer.precision, cfg.trainer.accelerator))
    log_settings(trainer, flat_hparams(cfg))  # HPARAMS, once, at the start

    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume, weights_only=True)
    except (DivergenceError, WriteError) as error:  # WriteError: a full disk, earlier checkpoints untouched
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this run as diverged or failed and goes on
        status = "diverged" if isinstance(error, DivergenceError) else "failed"
        if trainer.is_global_zero:
            with contextlib.suppress(WriteError):  # the disk may not even hold metrics.json
                write_metrics(cfg, {"status": status, "error": str(error), "epochs": trainer.current_epoch})
        fail(str(error), status=1 if status == "diverged" else 2)
    seconds = time.perf_counter() - start
    # this segment's own: a resumed run's earlier steps took other time
    steps = trainer.global_step - module.segment_start_step

    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=cfg.verbose)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})
        metrics["best_checkpoint"] = best
    metrics.update(params=params, macs=macs, epochs=trainer.current_epoch, wall_time_s=round(seconds, 2),
                   precision=trainer.precision,
                   train_images_per_s=round(steps * cfg.data.batch_size / seconds, 1))  # val included
    metrics["status"] = run_status(cfg, metrics)  # completed, diverged, or debug (fast_dev_run, overfit_batches)
    for logger in trainer.loggers:
        logger.finalize("success")  # flush; the HPARAMS tab reads the metrics' last values from the curves
    if trainer.is_global_zero:
        write_metrics(cfg, metrics)  # every metric, unrounded
        print(metrics_table(metrics))
        print(f"run dir: {cfg.paths.output_dir}")
    return metrics.get(cfg.optimized_metric)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    RESOLVERS.register()  # named here, so that joblib's workers, which run this function and not the module, get them
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return train(cfg)
    try:  # in a sweep, a failed run says so in one line, is recorded, and the launcher goes on with the others
        return train(cfg)
    except (Exception, SystemExit) as error:  # SystemExit: a bad value, already reported
        record_failure(cfg, error)  # the sweep names its failed runs and exits 1 once every run is done
        return None


if __name__ == "__main__":
    entry_point(CONFIG_DIR, main, config_name="train", required=REQUIRED)()
