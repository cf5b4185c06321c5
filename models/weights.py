"""Trained weights for the zoo: the files shipped in ``weights/``, any weights
file with its card, and torchvision's ImageNet weights.

    create_model("resnet20", weights="cifar10")          # weights/resnet20-cifar10.pth, checked against its card
    create_model("resnet20", weights="path/to/my.pth")   # any file with a card beside it (my.json)
    create_model("resnet18", weights="imagenet")         # torchvision's ImageNet weights, by key
    create_model("resnet20", weights="resnet20-12fca82f.th")  # a community checkpoint (COMMUNITY below)

A shipped weights file is a plain ``state_dict`` of the network (no
Lightning keys, no optimizer), loaded with ``torch.load(weights_only=True)``;
its JSON card beside it names the model and the options it was built with,
the data and its normalization, the recipe, the accuracy and the file's
sha256, which is checked before the file is opened. A card is data: it
names options, which are checked against the builder's signature like a
command line; it never names code.

ImageNet weights come through torchvision's own weights mechanism (the
``DEFAULT`` entry of the model's weights enum), and are loaded by key with
``strict=True`` into the form of our model that is identical to
torchvision's (``form="torchvision"``, ``stem="imagenet"``, 1000 classes). Offline,
the file must already be in torch's hub cache; the error says where.

Community checkpoints, files another project publishes without a card of
ours, are recognised by their layout (``COMMUNITY``): today the CIFAR ResNets
of akamaster/pytorch_resnet_cifar10. Their keys are mapped to ours and the
options the file needs (option A's ``split`` padding) are set; where the
file's name carries the start of its sha256 (torch.hub's convention), the
file is checked against it first. They are opened with ``weights_only=True``
like everything else, and one line says what was recognised.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
CARD_FORMAT = 1


def shipped() -> dict[str, Path]:
    """Every weights file shipped in ``weights/``: ``"resnet20-cifar10"`` -> its card."""
    return {card.stem: card for card in sorted(WEIGHTS_DIR.glob("*.json"))}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_card(model: str, weights: str | Path) -> Path:
    """The card for ``weights``: a data set name of a shipped file (``"cifar10"``
    with ``model="resnet20"``: ``weights/resnet20-cifar10.json``), a shipped
    name (``"resnet20-cifar10"``), or a path to a weights file or a card."""
    text = str(weights)
    if text.endswith((".pth", ".pt", ".json")) or "/" in text or "\\" in text:
        card = Path(text).with_suffix(".json")
        if not Path(text).exists():
            raise WeightsError(f"weights={text!r} does not exist")
        if not card.is_file():
            raise WeightsError(f"weights={text!r} has no card beside it ({card.name}): its sha256 and model "
                               "cannot be checked")
        return card
    available = shipped()
    for key in (f"{model}-{text}", text):
        if key in available:
            return available[key]
    if not model:  # evaluate.py weights=<name>: any shipped file
        raise WeightsError(f"weights={text!r} is not shipped; valid: "
                           f"{', '.join([*available, 'a path to a .pth file with its card'])}")
    names = [name.split("-", 1)[1] for name in available if name.startswith(f"{model}-")]
    valid = ", ".join(names + ["imagenet", "a path to a .pth file with its card"])
    raise WeightsError(f"weights={text!r} is not shipped for model {model!r}; valid: {valid}")


def read_card(card: Path) -> dict:
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(f"{card} is not a readable weights card: {error}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{card} is not a weights card of this project (not a JSON object)")
    for key in ("model", "file", "sha256"):
        if key not in data:
            raise WeightsError(f"{card} is not a weights card of this project (no {key!r})")
    check_card_fields(card, data)
    return data


def check_card_fields(card: Path, data: dict) -> None:
    """A card is data: its ``file`` is a plain file name beside it (never a path: ``../x.pth``,
    ``/etc/x``), its ``model`` a name with options, its ``sha256`` a digest; else one line."""
    model, file, digest = data["model"], data["file"], data["sha256"]
    if (not isinstance(model, dict) or not isinstance(model.get("name"), str)
            or not isinstance(model.get("options", {}), dict)):
        raise WeightsError(f"{card}: its model is {model!r}; expected {{\"name\": <a zoo model>, "
                           "\"options\": {...}}")
    if (not isinstance(file, str) or file != Path(file).name or file in ("", ".", "..") or "\\" in file
            or not file.endswith((".pth", ".pt"))):
        raise WeightsError(f"{card}: its file is {file!r}; expected the name of a .pth file beside the "
                           "card, not a path")
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise WeightsError(f"{card}: its sha256 is {digest!r}; expected 64 hexadecimal digits")


def load_state_dict(card_path: Path) -> tuple[dict, dict]:
    """(card, state_dict): the card read, the file's sha256 checked, then the file opened with weights_only=True."""
    card = read_card(card_path)
    file = card_path.parent / card["file"]
    if not file.is_file():
        raise WeightsError(f"{file} is missing (named by {card_path.name})")
    found = sha256(file)
    if found != card["sha256"]:
        raise WeightsError(f"{file} does not match its card: sha256 {found[:16]}..., the card says "
                           f"{card['sha256'][:16]}...; the file is corrupted or was replaced")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 -- any unpickling failure of a file whose hash matched
        raise WeightsError(f"{file} is not a readable state_dict: "
                           f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{file} is not a plain state_dict (name -> tensor)")
    return card, state


def load_into(net: nn.Module, state: dict, source: str, described: str) -> None:
    """``load_state_dict(strict=True)`` with one line when the tensors do not fit."""
    mine = net.state_dict()
    missing = [k for k in mine if k not in state]
    unexpected = [k for k in state if k not in mine]
    wrong = [k for k in mine if k in state and mine[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        first = (f"{wrong[0]} is {tuple(state[wrong[0]].shape)} in the file, "
                 f"{tuple(mine[wrong[0]].shape)} in the model" if wrong
                 else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise WeightsError(f"{source} does not fit {described}: {len(missing)} tensors missing, {len(unexpected)} "
                           f"unexpected, {len(wrong)} of another shape (first: {first})")
    net.load_state_dict(state, strict=True)


def imagenet_state_dict(model: str) -> dict:
    """torchvision's ImageNet weights for ``model`` (its weights enum's DEFAULT),
    from torch's hub cache or downloaded."""
    import torchvision  # only here: the rest of models/ needs torch alone

    try:
        entry = torchvision.models.get_model_weights(model).DEFAULT
    except (ValueError, KeyError):
        raise WeightsError(f"weights='imagenet': torchvision ships no ImageNet weights for {model!r}") from None
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
    try:
        return entry.get_state_dict(progress=False, check_hash=True)
    except OSError as error:  # URLError is an OSError: no network
        raise WeightsError(f"weights='imagenet' for {model}: cannot download {entry.url} ({error}); "
                           f"put that file at {target}") from None


# Projects whose published checkpoints load without a card: what their files hold and need, as data.
IMAGENET_STATS = {"method": "imagenet", "shift": [0.485, 0.456, 0.406], "scale": [0.229, 0.224, 0.225]}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
COMMUNITY = {
    "akamaster/pytorch_resnet_cifar10": {
        "layout": "{'best_prec1', 'state_dict'} with 'module.'-prefixed keys and a 'linear' head",
        "licence": "BSD 2-clause",
        "options": {"shortcut": "A", "shortcut_padding": "split"},  # its LambdaLayer pads half before, half after
        "data": {"name": "cifar10", "copy": "CIFAR-10, the lossless originals (all 50,000 training images)",
                 "image_size": 32, "normalization": IMAGENET_STATS, "classes": CIFAR10_CLASSES},
        "selection": "its best epoch on the test set (no validation split)",
    },
}


def has_card(weights: str | Path) -> bool:
    return Path(str(weights)).with_suffix(".json").is_file()


def is_community_file(weights: str | Path) -> bool:
    """A weights path that is a file with no card of ours beside it: only a community checkpoint can be that."""
    path = Path(str(weights))
    return path.suffix != ".json" and path.is_file() and not has_card(path)


def check_name_hash(path: Path) -> None:
    """torch.hub's convention: a name ending in ``-<hex>`` carries the start of the file's sha256."""
    match = re.search(r"-([0-9a-f]{8,64})$", path.stem)
    if match and not sha256(path).startswith(match.group(1)):
        raise WeightsError(f"{path.name} does not match the sha256 its name carries ({match.group(1)}...): "
                           "the file is corrupted or was replaced")


def read_community(path: str | Path, model: str | None = None) -> tuple[dict, dict]:
    """(card, state_dict) of a community checkpoint: a card of ours written from what its project publishes
    (``COMMUNITY``) and the file's tensors under our names. Anything else: one line."""
    path = Path(str(path))
    check_name_hash(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 -- not a file torch reads as plain tensors and containers
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"weights={str(path)!r} is not a readable weights file ({first[:160]})") from None
    state = raw.get("state_dict") if isinstance(raw, dict) else None
    if not (isinstance(state, dict) and state and all(isinstance(k, str) and k.startswith("module.") for k in state)
            and all(isinstance(v, torch.Tensor) for v in state.values()) and "module.linear.weight" in state):
        known = "; ".join(f"{project}: {spec['layout']}" for project, spec in COMMUNITY.items())
        raise WeightsError(f"weights={str(path)!r} has no card beside it ({path.with_suffix('.json').name}) "
                           f"and is not a checkpoint this project recognises ({known})")
    project = "akamaster/pytorch_resnet_cifar10"
    spec = COMMUNITY[project]
    mapped = {re.sub(r"^linear\.", "fc.", key[len("module."):]): value for key, value in state.items()}
    for key in [k for k in mapped if k.endswith(".running_var")]:  # saved before BN counted its batches
        mapped.setdefault(key.replace("running_var", "num_batches_tracked"), torch.tensor(0))
    n = len({key.split(".")[1] for key in mapped if key.startswith("layer1.")})
    name = f"resnet{6 * n + 2}"
    if model and model != name:
        raise WeightsError(f"weights={str(path)!r} holds {project}'s ResNet-{6 * n + 2} ({n} blocks per "
                           f"stage), not {model}")
    best = raw.get("best_prec1")
    card = {"model": {"name": name, "options": dict(spec["options"])}, "file": path.name, "sha256": sha256(path),
            "source": project, "licence": spec["licence"], "data": dict(spec["data"], split={"seed": 0, "val": 5000}),
            "metrics": {"test_acc_in_file": float(best) / 100 if isinstance(best, (int, float)) else None,
                        "selection": spec["selection"]}}
    return card, mapped


def announce(card: dict) -> None:
    """The one line that says what a community file was recognised as and what it needs."""
    data = card["data"]
    print(f"weights: {card['file']} is a checkpoint of {card['source']} ({card['model']['name']}, trained on "
          f"{data['copy']}): 'module.' prefix stripped, 'linear' read as 'fc', built with "
          f"{', '.join(f'{k}={v!r}' for k, v in card['model']['options'].items())}; it expects inputs normalized with "
          f"ImageNet's mean and std (data.normalize={data['normalization']['method']})", file=sys.stderr)
