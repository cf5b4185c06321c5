"""Train a zoo model, then test its best checkpoint.

    python train.py                                   # ResNet-18 on CIFAR-10
    python train.py model=vgg16 optimizer=adam activation=tanh model.batchnorm=false
    python train.py experiment=smoke                  # LeNet-5 on digits, a minute on a CPU
    python train.py -m model=lenet5,resnet18 optimizer=sgd,adam   # a sweep

Writes into its run dir (outputs/<time>_<model>_<data>/): the resolved config
(.hydra/), checkpoints/ (best by val/acc, and last), the TensorBoard events,
and metrics.json with the final test metrics. Returns the value named by
``optimized_metric`` so that Hydra sweepers can optimize it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from training.cli import entry_point, user_errors_as_lines
from training.module import ImageClassifier

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list:
    """Build every ``_target_`` node of a group of named parts (callbacks, loggers)."""
    return [instantiate(node) for node in (group or {}).values() if node and "_target_" in node]


@user_errors_as_lines
def build(cfg: DictConfig) -> tuple[L.LightningDataModule, ImageClassifier, L.Trainer]:
    """Every part from its config; bad input fails here, before any training."""
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # a missing data set is reported now, not after the model is built
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
    trainer_cfg = cfg.trainer
    if trainer_cfg.precision == "bf16-mixed" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        trainer_cfg = OmegaConf.merge(trainer_cfg, {"precision": "16-mixed"})  # pre-Ampere GPUs
    trainer = instantiate(trainer_cfg, callbacks=instantiate_all(cfg.callbacks), logger=instantiate_all(cfg.logger) or False)
    return datamodule, module, trainer


def train(cfg: DictConfig) -> float | None:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module, trainer = build(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(module.hparams.config)

    trainer.fit(module, datamodule=datamodule, weights_only=True)

    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})
        metrics["best_checkpoint"] = best
    output_dir = Path(cfg.paths.output_dir)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print("final metrics: " + json.dumps({k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}))
    return metrics.get(cfg.optimized_metric)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    entry_point(CONFIG_DIR, main)()
