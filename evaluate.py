"""Evaluate a checkpoint on the test split of the data it was trained on.

    python evaluate.py ckpt_path=outputs/<run>/checkpoints/last.ckpt
    python evaluate.py ckpt_path=outputs/<run>          # that run's best checkpoint
    python evaluate.py ckpt_path=... data.data_dir=/elsewhere trainer=cpu

The model and data are rebuilt from the options stored in the checkpoint
(``data.*`` here overrides them), through the model registry and the
``configs/data/`` options only: a checkpoint names options, never code
(training/trust.py); one that stores anything else is refused. Reports top-1 and top-5 accuracy,
macro precision / recall / F1, per-class accuracy and the confusion matrix:
printed, written as metrics.json and confusion_matrix.png into the run dir,
and logged to TensorBoard. Checkpoints are opened with weights_only=True.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from training.checkpoints import load_checkpoint, resolve_checkpoint
from training.cli import UserError, entry_point, instantiate_trainer, log_to_file, user_errors_as_lines
from training.module import ImageClassifier
from training.plots import confusion_matrix_figure
from training.records import write_json
from training.trust import build_datamodule, build_model, stored_config

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
FROM_CHECKPOINT = "evaluate.py takes the model and its training settings from the checkpoint"
HINTS = {key: FROM_CHECKPOINT for key in ("model", "optimizer", "scheduler", "loss", "regularization", "activation",
                                         "experiment", "callbacks", "seed", "resume")}
REQUIRED = {"ckpt_path": "python evaluate.py ckpt_path=<a .ckpt file or a run dir>"}


@user_errors_as_lines
def build(cfg: DictConfig):
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise UserError(f"ckpt_path is required: {REQUIRED['ckpt_path']}")
    path = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = load_checkpoint(path)
    config = stored_config(checkpoint, str(path))  # options only: a stored _target_ we do not name is refused
    replace = {k: v for k, v in cfg.data.items() if v is not None and k in config["data"]}
    datamodule = build_datamodule(config, str(path), replace)
    net = build_model(config, str(path), num_classes=datamodule.num_classes, in_channels=datamodule.in_channels)
    module = ImageClassifier(net, num_classes=datamodule.num_classes, config=config)
    module.load_state_dict(checkpoint["state_dict"])
    loggers = [instantiate(node) for node in (cfg.logger or {}).values() if node]
    trainer = instantiate_trainer(cfg.trainer, logger=loggers or False, enable_checkpointing=False)
    datamodule.prepare_data()  # may download; a missing data set is reported here
    datamodule.setup("test")  # reads (and checks) the data before the trainer starts
    return path, datamodule, module, trainer


def evaluate(cfg: DictConfig) -> dict:
    path, datamodule, module, trainer = build(cfg)
    log_to_file(cfg.paths.output_dir, "evaluate")
    trainer.test(module, datamodule=datamodule)
    results = module.test_results
    classes = list(getattr(datamodule, "classes", None) or range(datamodule.num_classes))
    report = {
        "checkpoint": str(path),
        "data": datamodule.name,
        "test_images": len(datamodule.test_set),
        **{f"test/{k}": results[k] for k in ("acc", "acc_top5", "precision_macro", "recall_macro", "f1_macro")},
        "per_class_acc": dict(zip(map(str, classes), results["per_class_acc"])),
        "confusion_matrix": results["confusion_matrix"],
        "classes": list(map(str, classes)),
    }
    output_dir = Path(cfg.paths.output_dir)
    write_json(output_dir / "metrics.json", report)
    figure = confusion_matrix_figure(results["confusion_matrix"], report["classes"])
    figure.savefig(output_dir / "confusion_matrix.png", dpi=120)
    for logger in trainer.loggers:
        if hasattr(logger.experiment, "add_figure"):
            logger.experiment.add_figure("test/confusion_matrix", figure)
        logger.finalize("success")  # flush the events before the process ends
    print("per-class accuracy: " + ", ".join(f"{c} {a:.4f}" for c, a in report["per_class_acc"].items()))
    print("final metrics: " + json.dumps({k: v for k, v in report.items() if k.startswith("test/")}))
    return report


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> dict:
    return evaluate(cfg)


if __name__ == "__main__":
    entry_point(CONFIG_DIR, main, config_name="evaluate", hints=HINTS, required=REQUIRED,
                unset=("data",))()
