"""Trained weights for the zoo: the files shipped in ``weights/``, any weights
file with its card, and torchvision's ImageNet weights.

    create_model("resnet20", weights="cifar10")          # weights/resnet20-cifar10.pth, checked against its card
    create_model("resnet20", weights="path/to/my.pth")   # any file with a card beside it (my.json)
    create_model("resnet18", weights="imagenet")         # torchvision's ImageNet weights, by key

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
"""

from __future__ import annotations

import hashlib
import json
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
            raise WeightsError(f"weights={text!r} has no card beside it ({card.name}): its sha256 and model cannot be checked")
        return card
    available = shipped()
    for key in (f"{model}-{text}", text):
        if key in available:
            return available[key]
    if not model:  # evaluate.py weights=<name>: any shipped file
        raise WeightsError(f"weights={text!r} is not shipped; valid: {', '.join([*available, 'a path to a .pth file with its card'])}")
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
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("options", {}), dict):
        raise WeightsError(f"{card}: its model is {model!r}; expected {{\"name\": <a zoo model>, \"options\": {{...}}}}")
    if (not isinstance(file, str) or file != Path(file).name or file in ("", ".", "..") or "\\" in file
            or not file.endswith((".pth", ".pt"))):
        raise WeightsError(f"{card}: its file is {file!r}; expected the name of a .pth file beside the card, not a path")
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
        raise WeightsError(f"{file} does not match its card: sha256 {found[:16]}..., the card says {card['sha256'][:16]}...; "
                           "the file is corrupted or was replaced")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 -- any unpickling failure of a file whose hash matched
        raise WeightsError(f"{file} is not a readable state_dict: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
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
        first = (f"{wrong[0]} is {tuple(state[wrong[0]].shape)} in the file, {tuple(mine[wrong[0]].shape)} in the model" if wrong
                 else f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
        raise WeightsError(f"{source} does not fit {described}: {len(missing)} tensors missing, {len(unexpected)} unexpected, "
                           f"{len(wrong)} of another shape (first: {first})")
    net.load_state_dict(state, strict=True)


def imagenet_state_dict(model: str) -> dict:
    """torchvision's ImageNet weights for ``model`` (its weights enum's DEFAULT), from torch's hub cache or downloaded."""
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
