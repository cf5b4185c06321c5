"""Shipping a trained network: export a run's best-val checkpoint as a plain
``state_dict`` with its JSON card, and evaluate weights the way the card says.

    python evaluate.py ckpt_path=<run dir> export=weights      # writes weights/<model>-<data>.pth and .json
    python evaluate.py weights=resnet20-cifar10 data.root=data/cifar10-jpeg

The card is the weights' whole story, as data: the model and every option it
was built with, the data set (and which copy), its split and normalization
statistics and class names, the recipe (the experiment and every override,
the exact command), the seed, epochs, val and test accuracy, hardware and
wall time, library versions, the commit, and the file's sha256. Its test
accuracy is measured here, on the exported file, through the same function
that tests and ``evaluate.py weights=`` use, so the card and any re-check
agree to the image.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from datamodules import ClassificationDataModule, ImageFolderDataModule, TorchvisionDataModule
from models import create_model
from models.weights import CARD_FORMAT, WeightsError, find_card, load_into, read_card, sha256
from training.checkpoints import load_checkpoint, resolve_checkpoint

from .trust import build_datamodule, model_spec, stored_config

# a copy of CIFAR-10 this project can name, by the sha256 of its archive (../shared/data/README.md)
KNOWN_COPIES = {"cifar10-jpeg": "CIFAR-10, all 60,000 images re-encoded as 32x32 JPEG (quality ~75), "
                "../shared/data/cifar10-jpeg.tar.gz, sha256 45b041e867f5a40f79bfde38d3dd1fd511103d50068c1afecf6445e25234d4db"}


def test_accuracy(net: nn.Module, datamodule: ClassificationDataModule) -> tuple[int, int]:
    """(correct, total) of ``net`` on the data module's test split, in eval mode on the CPU."""
    import torch

    datamodule.device = torch.device("cpu")
    datamodule.setup("test")
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in datamodule.test_dataloader():
            correct += int((net(x).argmax(1) == y).sum())
            total += len(y)
    return correct, total


def card_datamodule(card: dict, root: str | None = None, data_dir: str = "data", download: bool = True,
                    batch_size: int = 500) -> ClassificationDataModule:
    """The test split the card's weights were measured on, normalized with the card's statistics:
    an image folder at ``root`` (e.g. the CIFAR-10 JPEG copy), else torchvision's copy in ``data_dir``."""
    data = card["data"]
    common = dict(data_dir=data_dir, batch_size=batch_size, image_size=data["image_size"], augment="none",
                  normalize=data["normalization"]["method"], stats=data["normalization"], seed=data["split"]["seed"],
                  val_size=data["split"]["val"], pipeline="tensor")
    if root:
        return ImageFolderDataModule(root=root, num_workers=0, **common)
    return TorchvisionDataModule(dataset=data["name"], download=download, **common)


def evaluate_card(card_path: Path, root: str | None = None, data_dir: str = "data", download: bool = True) -> dict:
    """Load the weights a card describes (sha256 checked) and measure their test accuracy."""
    card = read_card(card_path)
    net = create_model(card["model"]["name"], weights=str(card_path.with_name(card["file"])))
    correct, total = test_accuracy(net, card_datamodule(card, root, data_dir, download))
    return {"weights": str(card_path), "model": card["model"]["name"], "test/acc": correct / total, "test_images": total,
            "card_test_acc": card["metrics"]["test_acc"]}


def run_record(run_dir: Path) -> dict:
    """What a train.py run dir says about itself (config, overrides, choices, metrics, manifest), read as data."""
    def read(name: str, loader=json.loads):
        path = run_dir / name
        return loader(path.read_text()) if path.is_file() else None

    hydra_cfg = read(".hydra/hydra.yaml", yaml.safe_load) or {}
    return {"overrides": read(".hydra/overrides.yaml", yaml.safe_load) or [],
            "choices": hydra_cfg.get("hydra", {}).get("runtime", {}).get("choices", {}),
            "metrics": read("metrics.json") or {}, "manifest": read("manifest.json") or {}}


def data_copy(data_cfg: dict) -> str:
    root = str(data_cfg.get("root") or "")
    for name, description in KNOWN_COPIES.items():
        if Path(root).name == name:
            return description
    return root or f"torchvision's {data_cfg.get('dataset')} download"


def portable(arguments: list[str]) -> list[str]:
    """A recipe as any machine can read it: ``hydra.*`` and ``paths.*`` overrides (where the training machine
    wrote the run and kept its cache) are left out, and an absolute path in another value keeps its last part
    only (``data.root=.../cifar10-jpeg``; the card's ``data.copy`` says which copy that is)."""
    kept = []
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if equals and key.lstrip("+~").startswith(("hydra.", "paths.")):
            continue
        path = Path(value.strip("'\""))  # a quoted path: 'multirun/<time>/optimizer=sgd'
        kept.append(f"{key}=.../{path.name}" if equals and path.is_absolute() else argument)
    return kept


def export(run_dir: str | Path, out_dir: str | Path = "weights", data_name: str = "cifar10") -> Path:
    """Write ``<out_dir>/<model>-<data_name>.pth`` (the best-val checkpoint's network) and its card; return the card."""
    run_dir = Path(run_dir)
    record = run_record(run_dir)
    metrics, manifest = record["metrics"], record["manifest"]
    if metrics.get("status") != "completed":
        raise WeightsError(f"{run_dir} is not a completed train.py run (status {metrics.get('status')!r}); only finished runs are exported")
    checkpoint_path = resolve_checkpoint(run_dir)
    checkpoint = load_checkpoint(checkpoint_path)
    config = stored_config(checkpoint, str(checkpoint_path))  # options only: a stored _target_ we do not name is refused
    state = {k[len("net."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}

    data_cfg = {k: v for k, v in config["data"].items() if k != "_target_"}
    datamodule = build_datamodule(config, str(checkpoint_path))
    datamodule.prepare_data()
    datamodule.setup("fit")
    model_name, options = model_spec(config, str(checkpoint_path))
    options.update(num_classes=datamodule.num_classes, in_channels=datamodule.in_channels)
    net = create_model(model_name, **options)
    load_into(net, state, str(checkpoint_path), f"model={model_name}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    file = out_dir / f"{model_name}-{data_name}.pth"
    import torch

    torch.save(net.state_dict(), file)
    card = {
        "format": CARD_FORMAT,
        "model": {"name": model_name, "options": options},
        "data": {"name": data_name, "copy": data_copy(data_cfg), "image_size": datamodule.image_size,
                 "split": {"train": len(datamodule.train_set), "val": len(datamodule.val_set), "test": len(datamodule.test_set),
                           "seed": datamodule.seed, "how": "stratified validation split of train/, drawn with the seed"},
                 "normalization": {"method": datamodule.normalize, "shift": datamodule.shift, "scale": datamodule.scale,
                                   "applied_as": "(x / 255 - shift) / scale, per channel"},
                 "classes": list(map(str, datamodule.classes))},
        "recipe": {"experiment": record["choices"].get("experiment"), "overrides": portable(record["overrides"]),
                   "command": manifest.get("command") and shlex.join(portable(shlex.split(manifest["command"]))), "choices": {k: v for k, v in record["choices"].items() if v and not k.startswith("hydra")}},
        "seed": config.get("seed"),
        "epochs": metrics.get("epochs"),
        "selected": f"best validation accuracy: {checkpoint_path.name} (test measured once, on that checkpoint)",
        "metrics": {"val_acc": metrics.get("val/acc_best"), "run_test_acc": metrics.get("test/acc")},
        "training": {"wall_time_s": metrics.get("wall_time_s"), "cpu": manifest.get("cpu"), "devices": manifest.get("devices"),
                     "torch_threads": manifest.get("torch_threads"), "resumed": len(manifest.get("resumes", [])),
                     "platform": manifest.get("platform")},
        "software": {"python": manifest.get("python"), **(manifest.get("packages") or {}), "cuda": manifest.get("cuda")},
        "commit": (manifest.get("git") or {}).get("commit"), "dirty": (manifest.get("git") or {}).get("dirty"),
        "file": file.name,
        "bytes": file.stat().st_size,
        "sha256": sha256(file),
    }
    # measured exactly as evaluate.py weights= and the tests measure it: the card's statistics, the shipped file
    test_data = card_datamodule(card, root=data_cfg.get("root"), data_dir=data_cfg.get("data_dir", "data"), download=False)
    correct, total = test_accuracy(_loaded(model_name, options, file), test_data)
    card["metrics"].update(test_acc=correct / total, test_correct=correct, test_images=total)
    card_path = file.with_suffix(".json")
    partial = card_path.with_name(f".{card_path.name}.tmp")
    partial.write_text(json.dumps(card, indent=2) + "\n")
    partial.replace(card_path)
    return card_path


def _loaded(model_name: str, options: dict, file: Path) -> nn.Module:
    import torch

    net = create_model(model_name, **options)
    net.load_state_dict(torch.load(file, map_location="cpu", weights_only=True), strict=True)
    return net.eval()


__all__ = ["export", "evaluate_card", "test_accuracy", "card_datamodule", "find_card"]
