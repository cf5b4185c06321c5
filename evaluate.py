"""Evaluate a checkpoint, or shipped weights, on the test split of the data they were trained on.

    python evaluate.py ckpt_path=outputs/<run>/checkpoints/last.ckpt
    python evaluate.py ckpt_path=outputs/<run>          # that run's best checkpoint
    python evaluate.py ckpt_path=... data.data_dir=/elsewhere trainer=cpu
    python evaluate.py weights=resnet20-cifar10 data.root=data/cifar10-jpeg   # weights/, normalized as its card says
    python evaluate.py weights=../shared/reference/akamaster/resnet20-12fca82f.th data.root=data/cifar10-jpeg
    python evaluate.py ckpt_path=outputs/<run> export=weights   # also write weights/<model>-cifar10.pth + card

The model and data are rebuilt from the options stored in the checkpoint
(``data.*`` here overrides them), through the model registry and the
``configs/data/`` options only: a checkpoint names options, never code
(reporting/trust.py); one that stores anything else is refused. Reports top-1 and top-5 accuracy,
macro precision / recall / F1, per-class accuracy and the confusion matrix:
printed, written as metrics.json and confusion_matrix.png into the run dir,
and logged to TensorBoard. Checkpoints are opened with weights_only=True.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from cli.commandline import entry_point, instantiate_trainer
from cli.validation import check_run
from core.errors import UserError, user_errors_as_lines
from core.files import log_to_file, write_json
from core.rundir import claim_run_dir
from reporting.trust import build_datamodule, build_model, evaluation_data, stored_config

# torch, Lightning and the zoo are imported in the functions below: --help and a mistyped key answer before them

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
FROM_CHECKPOINT = ("evaluate.py takes the model and its training settings from the checkpoint (ckpt_path=) "
                   "or the card (weights=)")
HINTS = {key: FROM_CHECKPOINT for key in ("model", "optimizer", "scheduler", "loss", "regularization", "activation",
                                         "experiment", "callbacks", "seed", "resume")}
REQUIRED = {"ckpt_path": "python evaluate.py ckpt_path=<a .ckpt file or a run dir>"}


def build_from_weights(cfg: DictConfig):
    """Shipped weights, a weights file with its card, or a community checkpoint (models.weights.COMMUNITY, its
    card written from what its project publishes): the model from the card, the test split normalized as it says."""
    from models import create_model
    from models.weights import find_card, is_community_file, read_card, read_community
    from reporting.weights import card_datamodule
    from training.module import ImageClassifier

    if is_community_file(cfg.weights):
        card_path, (card, _) = Path(cfg.weights), read_community(cfg.weights)
        net = create_model(card["model"]["name"], weights=cfg.weights)
    else:
        card_path = find_card("", cfg.weights)
        card = read_card(card_path)
        net = create_model(card["model"]["name"], weights=str(card_path.with_name(card["file"])))
    datamodule = card_datamodule(card, root=cfg.data.root, data_dir=cfg.data.data_dir or cfg.paths.data_dir)
    return card_path, datamodule, ImageClassifier(net, num_classes=len(card["data"]["classes"]), config=card)


@user_errors_as_lines
def build(cfg: DictConfig):
    check_run(cfg, REQUIRED)  # before torch is imported
    from models.weights import shipped
    from reporting.weights import check_export_name
    from training.checkpoints import check_fits, load_checkpoint, resolve_checkpoint, warn_non_finite
    from training.module import ImageClassifier

    if cfg.weights and cfg.ckpt_path:
        raise UserError("give ckpt_path= or weights=, not both")
    if cfg.export_name is not None and not cfg.export:
        raise UserError(f"export_name={cfg.export_name!r} names the exported files; give export=<folder> too")
    check_export_name(cfg.export_name)
    if cfg.weights:
        card_path, datamodule, module = build_from_weights(cfg)
        return card_path, ready(datamodule), module, make_trainer(cfg)
    if not cfg.ckpt_path:
        raise UserError(f"ckpt_path or weights is required: {REQUIRED['ckpt_path']} "
                        f"or weights=<one of {', '.join(shipped()) or 'the files in weights/'}>")
    path = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = load_checkpoint(path)
    config = stored_config(checkpoint, str(path))  # options only: a stored _target_ we do not name is refused
    datamodule = build_datamodule(config, str(path), evaluation_data(cfg, config, str(path)))  # data_dir: ours
    net = build_model(config, str(path), num_classes=datamodule.num_classes, in_channels=datamodule.in_channels)
    module = ImageClassifier(net, num_classes=datamodule.num_classes, config=config)
    check_fits(module.state_dict(), checkpoint["state_dict"], str(path), f"model={config['model']['name']} as stored")
    warn_non_finite(checkpoint["state_dict"], path)
    module.load_state_dict(checkpoint["state_dict"])
    return path, ready(datamodule), module, make_trainer(cfg)


def ready(datamodule):
    """The data read and checked before any Trainer exists: a missing data set or a bad image is reported here."""
    datamodule.prepare_data()  # may download
    datamodule.setup("test")
    return datamodule


def make_trainer(cfg: DictConfig):
    """Last: the Trainer prints what it found (GPU, TPU) when built, so every input is checked first."""
    loggers = [instantiate(node) for node in (cfg.logger or {}).values() if node]
    bar = cfg.trainer.get("enable_progress_bar", True) and sys.stdout.isatty()  # frames of a bar are noise in a file
    return instantiate_trainer(cfg.trainer, logger=loggers or False, enable_checkpointing=False,
                               enable_model_summary=cfg.verbose, enable_progress_bar=bar)


def evaluate(cfg: DictConfig) -> dict:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only  # rank: RANK, LOCAL_RANK or SLURM_PROCID

    from core.figures import confusion_matrix_figure, confusion_matrix_text
    from core.files import save_figure
    from models.weights import read_card
    from reporting.weights import export
    from training.checkpoints import run_dir_of
    from training.progress import metrics_table

    path, datamodule, module, trainer = build(cfg)
    # writable, no link inside, one run per run dir
    user_errors_as_lines(claim_run_dir)(cfg.paths.output_dir, rank_zero_only.rank)
    log_to_file(cfg.paths.output_dir, "evaluate")
    trainer.test(module, datamodule=datamodule, verbose=cfg.verbose)
    results = module.test_results
    classes = list(getattr(datamodule, "classes", None) or range(datamodule.num_classes))
    report = {
        "checkpoint" if path.suffix == ".ckpt" else "weights": str(path),
        "data": datamodule.name,
        "test_images": len(datamodule.test_set),
        **{f"test/{k}": results[k] for k in ("acc", "acc_top5", "precision_macro", "recall_macro", "f1_macro")},
        "per_class_acc": dict(zip(map(str, classes), results["per_class_acc"])),
        "confusion_matrix": results["confusion_matrix"],
        "classes": list(map(str, classes)),
    }
    output_dir = Path(cfg.paths.output_dir)
    write_json(output_dir / "metrics.json", report)
    model, data = (module.hparams.config or {}).get("model", {}).get("name", "model"), datamodule.name
    figure = confusion_matrix_figure(results["confusion_matrix"], report["classes"], title=f"{model} on {data} (test)")
    save_figure(figure, output_dir / "confusion_matrix.png", dpi=120)
    for logger in trainer.loggers:
        if hasattr(logger.experiment, "add_figure"):
            logger.experiment.add_figure("xray/confusion_matrix_test", figure)
        logger.finalize("success")  # flush the events before the process ends
    print(f"{model} on {data}: {report['test_images']} test images")
    print(metrics_table(report, shown=("acc", "acc_top5", "precision_macro", "recall_macro", "f1_macro")))
    print(confusion_matrix_text(results["confusion_matrix"], report["classes"]))
    if cfg.get("visualize"):  # filters, feature maps and Grad-CAM of test images of every class, as PNGs
        from training.features import class_sample, write_pngs
        images, targets = class_sample(datamodule.test_dataloader(), len(classes), max(1, 80 // len(classes)))
        for png in write_pngs(module.net, images, targets, output_dir, shift=getattr(datamodule, "shift", None),
                              scale=getattr(datamodule, "scale", None), classes=report["classes"], model=model):
            print(f"wrote {png}")
    if cfg.export:
        card = user_errors_as_lines(export)(run_dir_of(path), cfg.export,
                                            data_dir=cfg.data.data_dir or cfg.paths.data_dir, force=cfg.force,
                                            name=cfg.export_name, root=cfg.data.get("root"))
        print(f"exported: {card.with_name(read_card(card)['file'])} and its card {card}")
    print(f"run dir: {output_dir}")
    return report


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
@user_errors_as_lines  # bad input anywhere in the task: one line, exit 2 (Hydra would add a line of its own)
def main(cfg: DictConfig) -> dict:
    from training.progress import quiet

    quiet(cfg.verbose)
    return evaluate(cfg)


if __name__ == "__main__":
    entry_point(CONFIG_DIR, main, config_name="evaluate", hints=HINTS)()
