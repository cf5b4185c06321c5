"""Shipping a trained network: export a run's best-val checkpoint as a plain
``state_dict`` with its JSON card, and evaluate weights the way the card says.

    python evaluate.py ckpt_path=<run dir> export=weights      # writes weights/<model>-<data>.pth and .json
    python evaluate.py weights=resnet20-cifar10 data.root=data/cifar10-jpeg

The card is the weights' whole story, as data: the model and every option it
was built with, the data set (and which copy: an image folder by its images' sha256), its split and normalization
statistics and class names, the recipe (the experiment and every override,
the exact command), the seed, epochs, val and test accuracy, hardware and
wall time, library versions, the commit, and the file's sha256. Its test
accuracy is measured here, on the exported file, through the same function
that tests and ``evaluate.py weights=`` use, so the card and any re-check
agree to the image.

Export is all or nothing: the file and its card are built and verified in a
temporary folder inside the destination, then moved in; a failure leaves the
destination as it was, and the weights of another data set or run (another
checkpoint's sha256 on the card) are replaced only with ``force=true``. A card
read back is checked before use: its ``file`` a plain name beside it, its
``data.image_size`` bounded.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable
from pathlib import Path

import yaml

from core.errors import user_errors_renamed
from core.files import atomic_write, fsync_dir, refuse_link, safe_name, write_error, write_json
from datamodules import ClassificationDataModule, DigitsDataModule, ImageFolderDataModule, TorchvisionDataModule
from datamodules.torchvision_sets import DATASETS
from models import create_model
from models.weights import CARD_FORMAT, WeightsError, find_card, load_into, read_card, read_community, sha256
from training.checkpoints import load_checkpoint, resolve_checkpoint

from .trust import build_datamodule, model_spec, stored_config

# copies of a data set this project can name, by what they hold (ImageFolderDataModule.fingerprint: the sha256 of
# every image file, its path under the root and its bytes), whatever their folder is called: (data set, which copy)
KNOWN_COPIES = {
    "9331aba37042b53ef175ea92210135363b064914b4bd4729651584a1b708a676": (
        "cifar10", "CIFAR-10, all 60,000 images re-encoded as 32x32 JPEG (quality ~75), "
        "../shared/data/cifar10-jpeg.tar.gz, sha256 45b041e867f5a40f79bfde38d3dd1fd511103d50068c1afecf6445e25234d4db"),
}


# nn: torch.nn, never imported at the top of cli/ (tests/test_architecture.py); the annotation is a string
def test_counts(net: nn.Module, datamodule: ClassificationDataModule,  # noqa: F821
                classes: Iterable[int] | None = None) -> list[tuple[int, int]]:
    """Per class, in the data module's class order: (correct, images) of ``net`` on the test split, in eval mode on
    the CPU; with ``classes``, only those classes' images go through the network (the others count (0, 0)). A
    convolutional network is moved (in place) to channels_last, oneDNN's fast layout: ResNet-56 on 10,000 images
    1.25x faster here, and every shipped card's accuracy the same."""
    import torch

    datamodule.device = torch.device("cpu")
    datamodule.setup("test")
    net.eval()
    layout = torch.channels_last if any(isinstance(m, torch.nn.Conv2d) for m in net.modules()) else None
    if layout is not None:
        net = net.to(memory_format=layout)
    chosen = None if classes is None else torch.tensor(sorted(set(classes)))
    correct = torch.zeros(datamodule.num_classes, dtype=torch.long)
    images = torch.zeros(datamodule.num_classes, dtype=torch.long)
    with torch.inference_mode():
        for x, y in datamodule.test_dataloader():
            if chosen is not None:
                keep = torch.isin(y, chosen)
                x, y = x[keep], y[keep]
                if not len(y):
                    continue
            x = x.contiguous(memory_format=layout) if layout is not None and x.dim() == 4 else x
            right = net(x).argmax(1) == y
            correct += torch.bincount(y[right], minlength=datamodule.num_classes)
            images += torch.bincount(y, minlength=datamodule.num_classes)
    return list(zip(correct.tolist(), images.tolist()))


def test_accuracy(net: nn.Module, datamodule: ClassificationDataModule) -> tuple[int, int]:  # noqa: F821
    """(correct, total) of ``net`` on the whole test split (``test_counts``, summed)."""
    counts = test_counts(net, datamodule)
    return sum(c for c, _ in counts), sum(n for _, n in counts)


def card_data(card: dict, source: object = "the card") -> dict:
    """The card's ``data`` section, its shape checked (a missing section or a non-number statistic would fail deep
    inside); its values, ``image_size`` among them, by the data module that takes them (``card_datamodule``)."""
    data = card.get("data")
    if not isinstance(data, dict):
        raise WeightsError(f"{source}: its data is {data!r}; expected the data section export writes")
    norm, split = data.get("normalization"), data.get("split")
    numbers = lambda v: isinstance(v, list) and v and all(  # noqa: E731
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    if not isinstance(norm, dict) or not numbers(norm.get("shift")) or not numbers(norm.get("scale")):
        raise WeightsError(f"{source}: its data.normalization is {norm!r}; expected method, shift and scale "
                           "(lists of numbers)")
    if not isinstance(split, dict) or isinstance(split.get("seed"), bool) or not isinstance(split.get("seed"), int):
        raise WeightsError(f"{source}: its data.split is {split!r}; expected the seed and sizes of the split")
    if not isinstance(data.get("name"), str):
        raise WeightsError(f"{source}: its data.name is {data.get('name')!r}; expected a data set name")
    return data


def card_datamodule(card: dict, root: str | None = None, data_dir: str = "data", download: bool = True,
                    batch_size: int = 500) -> ClassificationDataModule:
    """The test split the card's weights were measured on, normalized with the card's statistics:
    an image folder at ``root`` (e.g. the CIFAR-10 JPEG copy), digits (scikit-learn's), else torchvision's
    copy in ``data_dir``."""
    data = card_data(card)
    common = dict(data_dir=data_dir, batch_size=batch_size, image_size=data.get("image_size"), augment="none",
                  normalize=data["normalization"].get("method"), stats=data["normalization"],
                  seed=data["split"]["seed"], val_size=data["split"].get("val"), pipeline="tensor")
    if not root and data["name"] != "digits" and data["name"] not in DATASETS:
        raise WeightsError(f"the card's data set {data['name']!r} is a folder of images: give data.root=<that folder>")
    # the data module's own rules (an image_size of 30000 would ask for gigabytes), named as the card states them
    with user_errors_renamed(lambda line: f"the card: its {line}", WeightsError):
        if root:
            return ImageFolderDataModule(root=root, num_workers=0, **common)
        if data["name"] == "digits":
            return DigitsDataModule(**common)
        return TorchvisionDataModule(dataset=data["name"], download=download, **common)


def evaluate_card(card_path: Path, root: str | None = None, data_dir: str = "data", download: bool = True) -> dict:
    """Load the weights a card describes (sha256 checked) and measure their test accuracy."""
    card = read_card(card_path)
    net = create_model(card["model"]["name"], weights=str(card_path.with_name(card["file"])))
    correct, total = test_accuracy(net, card_datamodule(card, root, data_dir, download))
    return {"weights": str(card_path), "model": card["model"]["name"], "test/acc": correct / total,
            "test_images": total, "card_test_acc": card["metrics"]["test_acc"]}


def run_record(run_dir: Path) -> dict:
    """What a train.py run dir says about itself (config, overrides, choices, metrics, manifest), read as data."""
    def read(name: str, loader=json.loads):
        path = run_dir / name
        return loader(path.read_text()) if path.is_file() else None

    hydra_cfg = read(".hydra/hydra.yaml", yaml.safe_load) or {}
    return {"overrides": read(".hydra/overrides.yaml", yaml.safe_load) or [],
            "choices": hydra_cfg.get("hydra", {}).get("runtime", {}).get("choices", {}),
            "metrics": read("metrics.json") or {}, "manifest": read("manifest.json") or {}}


def data_identity(datamodule: ClassificationDataModule) -> dict:
    """The data set a run's weights are named after and which copy it is, as the card records them. An image
    folder is recognised by what it holds (its fingerprint, recorded too), never by its folder's name: the JPEG
    copy of CIFAR-10 is ``cifar10`` wherever it was extracted, and another folder keeps its own name, even one
    called ``cifar10-jpeg``. Else torchvision's download (``cifar10``, ``mnist``, ...) or scikit-learn's digits."""
    if isinstance(datamodule, ImageFolderDataModule):
        fingerprint = datamodule.fingerprint()
        folder = datamodule.root.resolve().name  # the folder's name, not its path: a record names no machine's path
        name, copy = KNOWN_COPIES.get(fingerprint, (safe_name(folder, "data"), f"the image folder {folder!r}"))
        return {"name": name, "copy": copy, "images_sha256": fingerprint}
    if isinstance(datamodule, TorchvisionDataModule):
        copy = f"torchvision's {datamodule.name} download"
    else:
        copy = "scikit-learn's digits" if isinstance(datamodule, DigitsDataModule) else datamodule.name
    return {"name": safe_name(datamodule.name, "data"), "copy": copy}


def check_replaceable(card_path: Path, data: str, source: str, force: bool) -> None:
    """Export never replaces the weights of another data set or another run unless ``force=true``: an
    existing card must name the same data set and the same checkpoint (its sha256)."""
    file = card_path.with_suffix(".pth")
    if not card_path.exists() and not file.exists():
        return
    try:
        card = json.loads(card_path.read_text())
        same = card["data"]["name"] == data and card["source"]["checkpoint_sha256"] == source
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    if not same and not force:
        raise WeightsError(f"{file} exists and holds another run's or another data set's weights; refusing to replace "
                           "it (give force=true to replace it, or export=<another folder>)")


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


def export(run_dir: str | Path, out_dir: str | Path = "weights", data_dir: str = "data", force: bool = False,
           name: str | None = None, root: str | None = None) -> Path:
    """Write ``<out_dir>/<name>.pth`` (the best-val checkpoint's network; a run without a best checkpoint: its
    final one) and its card; return the card. ``name``: ``<model>-<data>`` unless given (a fine-tune beside the
    from-scratch weights of the same model and data: ``resnet20-cifar10-finetuned``).
    All or nothing: both files are built and verified (the card read back, the file's sha256 checked, the
    weights loaded and their test accuracy measured) in a temporary folder inside ``out_dir``, then moved in;
    any failure leaves ``out_dir`` as it was. ``data_dir``: where the data is (from the command line); ``root``: the
    image folder to read instead of the one the run was trained from (``evaluate.py``'s ``data.root``: the run's
    folder may lie elsewhere now, or on another machine); the card names the copy by what the folder holds."""
    import tempfile

    import torch

    run_dir = Path(run_dir)
    record = run_record(run_dir)
    metrics, manifest = record["metrics"], record["manifest"]
    if metrics.get("status") != "completed":
        raise WeightsError(f"{run_dir} is not a completed train.py run (status {metrics.get('status')!r}); only "
                           "finished runs are exported")
    checkpoint_path = resolve_checkpoint(run_dir)
    checkpoint = load_checkpoint(checkpoint_path)
    # options only: a stored _target_ we do not name is refused
    config = stored_config(checkpoint, str(checkpoint_path))
    state = {k[len("net."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}

    replace = {"data_dir": data_dir} if "data_dir" in config["data"] else {}
    if root and "root" not in config["data"]:
        raise WeightsError(f"root={root!r}: {checkpoint_path} was not trained on an image folder; only its own data "
                           "set can be read")
    if root:
        replace["root"] = root
    datamodule = build_datamodule(config, str(checkpoint_path), replace)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model_name, options = model_spec(config, str(checkpoint_path))
    options.update(num_classes=datamodule.num_classes, in_channels=datamodule.in_channels)
    net = create_model(model_name, **options)
    load_into(net, state, str(checkpoint_path), f"model={model_name}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    identity = data_identity(datamodule)
    data = identity["name"]
    check_export_name(name)
    card_path = out_dir / f"{name or f'{model_name}-{data}'}.json"
    selected_by_val = checkpoint_path.name != "last.ckpt"  # a best checkpoint; else the run kept none
    started = config["model"].get("weights")
    source = sha256(checkpoint_path)
    check_replaceable(card_path, data, source, force)
    for path in (card_path, card_path.with_suffix(".pth")):
        refuse_link(path)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as staging:
        file = Path(staging) / card_path.with_suffix(".pth").name
        atomic_write(file, lambda handle: torch.save(net.state_dict(), handle))
        card = {
            "format": CARD_FORMAT,
            "model": {"name": model_name, "options": options},
            "data": {**identity, "image_size": datamodule.image_size,
                     "split": {"train": len(datamodule.train_set), "val": len(datamodule.val_set),
                               "test": len(datamodule.test_set), "seed": datamodule.seed,
                               "how": "stratified validation split of train/, drawn with the seed"},
                     "normalization": {"method": datamodule.normalize, "shift": datamodule.shift,
                                       "scale": datamodule.scale,
                                       "applied_as": "(x / 255 - shift) / scale, per channel"},
                     "classes": list(map(str, datamodule.classes))},
            "recipe": {"experiment": record["choices"].get("experiment"), "overrides": portable(record["overrides"]),
                       "command": manifest.get("command") and shlex.join(portable(shlex.split(manifest["command"]))),
                       "choices": {k: v for k, v in record["choices"].items() if v and not k.startswith("hydra")}},
            "seed": config.get("seed"),
            "epochs": metrics.get("epochs"),
            "selected": (f"best validation accuracy: {checkpoint_path.name} (test measured once, on that checkpoint)"
                         if selected_by_val else f"the final model: {checkpoint_path.name}, no selection (the run kept "
                         "no best checkpoint: callbacks.model_checkpoint=null)"),
            "started_from": started and starting_weights(started),
            "source": {"checkpoint": checkpoint_path.name, "checkpoint_sha256": source},
            "metrics": {"val_acc": metrics.get("val/acc_best" if selected_by_val else "val/acc"),
                        "run_test_acc": metrics.get("test/acc")},
            "training": {"wall_time_s": metrics.get("wall_time_s"), "cpu": manifest.get("cpu"),
                         "devices": manifest.get("devices"), "torch_threads": manifest.get("torch_threads"),
                         "resumed": len(manifest.get("resumes", [])), "platform": manifest.get("platform")},
            "software": {"python": manifest.get("python"), **(manifest.get("packages") or {}),
                         "cuda": manifest.get("cuda")},
            "commit": (manifest.get("git") or {}).get("commit"), "dirty": (manifest.get("git") or {}).get("dirty"),
            "file": file.name,
            "bytes": file.stat().st_size,
            "sha256": sha256(file),
        }
        # verified as a user meets it: the card read back, the sha256 checked, the file loaded into the model it names;
        # then measured exactly as evaluate.py weights= and the tests measure it: the card's statistics, the staged file
        staged_card = write_json(file.with_suffix(".json"), card)
        test_data = card_datamodule(read_card(staged_card), root=replace.get("root", config["data"].get("root")),
                                    data_dir=data_dir, download=False)
        counts = test_counts(create_model(model_name, weights=str(file), **options), test_data)
        correct, total = sum(c for c, _ in counts), sum(n for _, n in counts)
        card["metrics"].update(test_acc=correct / total, test_correct=correct, test_images=total,
                               test_correct_per_class=per_class(card["data"]["classes"], counts))
        write_json(staged_card, card)
        read_card(staged_card)
        move_in([(file, card_path.with_suffix(".pth")), (staged_card, card_path)], Path(staging))
        fsync_dir(out_dir)
    return card_path


def per_class(classes: list[str], counts: list[tuple[int, int]]) -> dict:
    """A card's ``metrics.test_correct_per_class``: each class's correct test images, by class name (how many
    test images each class has is the data set's; the CIFAR-10 copy has 1,000). The default test suite checks
    one class of each shipped file against it, exactly; ``-m slow`` checks every class."""
    return {name: correct for name, (correct, _) in zip(classes, counts)}


def check_export_name(name: object) -> None:
    """``export_name``: null, or one file name (letters, digits, ``-_.``; the suffixes are added)."""
    if name is not None and (not isinstance(name, str) or safe_name(name) != name or name.startswith(".")):
        raise WeightsError(f"export_name={name!r} is not valid: it must be a file name of letters, digits and -_. "
                           "(the .pth and .json suffixes are added), e.g. resnet20-cifar10-finetuned")


def starting_weights(weights: str) -> dict:
    """What a fine-tune started from (its ``model.weights``), for its card: the file's name and sha256 and, for a
    community checkpoint, its project and licence (their terms travel with what is made from their weights)."""
    path = Path(weights)
    found = {"file": path.name, "file_sha256": sha256(path) if path.is_file() else None}
    if path.is_file() and not path.with_suffix(".json").is_file():
        try:
            card = read_community(path)[0]
        except WeightsError:
            return found
        found.update(source=card["source"], licence=card["licence"], trained_on=card["data"]["copy"])
    return found


def move_in(moves: list[tuple[Path, Path]], staging: Path) -> None:
    """Rename each staged file over its destination, the card last (it names the file's sha256); if a rename
    fails, the destinations already replaced get their earlier files back (kept as links in ``staging``)."""
    kept = []
    for _, target in moves:
        if target.exists():
            os.link(target, staging / f"{target.name}.before")
            kept.append(target)
    done = []
    try:
        for source, target in moves:
            os.replace(source, target)
            done.append(target)
    except OSError as error:
        for target in done:
            if target in kept:
                os.replace(staging / f"{target.name}.before", target)
            else:
                target.unlink()
        raise write_error(moves[len(done)][1], error) from None


__all__ = ["export", "evaluate_card", "test_accuracy", "test_counts", "card_datamodule", "find_card"]
