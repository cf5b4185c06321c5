"""Shipped weights: every card's file and accuracy are checkable, and loading them is safe.

Every file in weights/ is evaluated on the real CIFAR-10 test split (the JPEG copy
in ../shared/data, 10,000 images) and must give the test accuracy its card states;
torch.hub and evaluate.py load the same files; a corrupted or mismatched file is
one line. torchvision's ImageNet weights load by key into our torchvision forms.
"""

from __future__ import annotations

import json
import shlex
import shutil
import urllib.error

import pytest
import torch
import torchvision

from helpers import ROOT, final_metrics
from inprocess import run_entry_output
from models import create_model
from models import weights as weights_module
from models.weights import WeightsError, read_card, sha256, shipped
from reporting.weights import card_datamodule, per_class
from reporting.weights import test_accuracy as accuracy_on_test_split  # (a test_* name would be collected)
from reporting.weights import test_counts as counts_on_test_split

CARDS = sorted(shipped().items())


def test_weights_are_shipped_with_cards():
    names = [name for name, _ in CARDS]
    assert {"logreg-cifar10", "linear_svm-cifar10", "lenet5-cifar10"} <= set(names), names


@pytest.mark.parametrize("name,card_path", CARDS, ids=[n for n, _ in CARDS])
def test_card_is_complete_and_its_sha256_matches(name, card_path):
    card = read_card(card_path)
    file = card_path.with_name(card["file"])
    assert file.is_file() and file.stat().st_size == card["bytes"] <= 10 * 2**20
    assert sha256(file) == card["sha256"]
    state = torch.load(file, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not any(key.startswith(("net.", "model.", "optimizer"))
                   for key in state), "a plain state_dict of the network"
    assert name == card_path.stem == file.stem and name.startswith(f"{card['model']['name']}-{card['data']['name']}")
    for key in ("options",):
        assert key in card["model"]
    data = card["data"]
    assert data["split"] == {**data["split"], "train": 45000, "val": 5000, "test": 10000}
    assert len(data["classes"]) == 10 and len(data["normalization"]["shift"]) == 3
    assert card["recipe"]["experiment"] and card["recipe"]["command"].startswith("python train.py")
    assert isinstance(card["seed"], int) and card["epochs"] >= 1 and card["commit"]
    metrics = card["metrics"]
    assert 0 < metrics["val_acc"] <= 1 and 0 < metrics["test_acc"] <= 1
    assert metrics["test_acc"] == metrics["test_correct"] / metrics["test_images"]
    assert list(metrics["test_correct_per_class"]) == data["classes"]  # what one class's check is measured against
    assert sum(metrics["test_correct_per_class"].values()) == metrics["test_correct"]
    assert card["software"]["torch"] and card["training"]["wall_time_s"] > 0 and card["training"]["cpu"]
    started = card.get("started_from")
    if started and started.get("source"):  # another project's weights fine-tuned here: their licence ships beside them
        assert started["licence"] and started["file_sha256"] and "/" not in started["file"]
        assert (card_path.parent / f"LICENSE-{started['source'].replace('/', '-')}.txt").is_file()
    text = card_path.read_text()  # no path of the training machine: where it kept the data, its cache, its run dir
    assert '"/' not in text and "=/" not in text and "hydra.run.dir" not in text and "paths." not in text


def test_a_card_records_its_recipe_without_the_training_machines_paths():
    from reporting.weights import portable

    command = shlex.split("python train.py experiment=x data.root=/work/data/cifar10-jpeg paths.data_dir=/work/cache "
                          "hydra.run.dir=/work/runs/out/x 'ckpt_path=/w/multirun/t/optimizer=sgd' data.root=rel/dir")
    assert portable(command) == ["python", "train.py", "experiment=x", "data.root=.../cifar10-jpeg",
                                 "ckpt_path=.../optimizer=sgd", "data.root=rel/dir"]


def measured(card_path, cifar10_jpeg, classes=None) -> list[tuple[int, int]]:
    """The shipped file's (correct, images) per class on the JPEG copy's test split, loaded by its name as a user
    loads it and normalized as its card says; with ``classes``, only those classes' images are run."""
    root, cache = cifar10_jpeg
    card = read_card(card_path)
    name = card_path.stem
    net = create_model(card["model"]["name"], weights=name.removeprefix(f"{card['model']['name']}-"))  # cifar10, ...
    assert not net.training
    return counts_on_test_split(net, card_datamodule(card, root=str(root), data_dir=str(cache)), classes)


# Each file against its card, exactly, on one class's 1,000 test images: a different class for each file, so the
# suite runs every class and a tenth of the networks' cost (the six ResNets on all 10,000 images took 5.5 minutes
# of the default suite on a 2-core Zen 1, where the whole suite must take under 5); the card's per-class record
# adds up to its test accuracy (test_card_is_complete_and_its_sha256_matches). Every class of every file: -m slow.
@pytest.mark.parametrize("index,name,card_path", [(i, n, p) for i, (n, p) in enumerate(CARDS)],
                         ids=[n for n, _ in CARDS])
def test_shipped_weights_reach_their_card_accuracy_on_one_class_of_the_real_test_split(cifar10_jpeg, index, name,
                                                                                       card_path):
    card = read_card(card_path)
    label = index % len(card["data"]["classes"])
    correct, images = measured(card_path, cifar10_jpeg, [label])[label]
    assert images == 1000
    assert correct == card["metrics"]["test_correct_per_class"][card["data"]["classes"][label]]


@pytest.mark.slow
@pytest.mark.parametrize("name,card_path", CARDS, ids=[n for n, _ in CARDS])
def test_shipped_weights_reach_their_card_accuracy_on_the_real_test_split(cifar10_jpeg, name, card_path):
    card = read_card(card_path)
    counts = measured(card_path, cifar10_jpeg)
    correct, total = sum(c for c, _ in counts), sum(n for _, n in counts)
    assert total == 10000
    assert correct / total == pytest.approx(card["metrics"]["test_acc"], abs=1e-4)
    assert per_class(card["data"]["classes"], counts) == card["metrics"]["test_correct_per_class"]


def test_torch_hub_loads_shipped_weights(cifar10_jpeg):
    root, cache = cifar10_jpeg
    name = "lenet5"  # the cheapest shipped file: hub takes the same path for every model; each file is checked above
    net = torch.hub.load(str(ROOT), name, source="local", weights="cifar10")
    card = read_card(shipped()[f"{name}-cifar10"])
    correct, total = accuracy_on_test_split(net, card_datamodule(card, root=str(root), data_dir=str(cache)))
    assert correct / total == pytest.approx(card["metrics"]["test_acc"], abs=1e-4)


def test_evaluate_py_evaluates_shipped_weights_with_the_card_normalization(cifar10_jpeg, tmp_path, capsys):
    root, cache = cifar10_jpeg
    card = read_card(shipped()["logreg-cifar10"])
    code, stdout, stderr = run_entry_output("evaluate.py", ["weights=logreg-cifar10", f"data.root={root}",
                                                            f"paths.data_dir={cache}", "logger=none",
                                                            "trainer.enable_progress_bar=false",
                                                            f"hydra.run.dir={tmp_path}"], capsys)
    assert code == 0, stderr[-2000:]
    assert final_metrics(stdout)["test/acc"] == pytest.approx(card["metrics"]["test_acc"], abs=1e-4)


# ---- bad weights: one line each ---------------------------------------------------


@pytest.fixture
def copied_card(tmp_path):
    """The shipped logreg weights and card, copied somewhere they may be damaged."""
    card_path = shipped()["logreg-cifar10"]
    card = read_card(card_path)
    shutil.copy(card_path, tmp_path / card_path.name)
    shutil.copy(card_path.with_name(card["file"]), tmp_path / card["file"])
    return tmp_path / card_path.name, card


def one_line_error(capsys, argv: list[str], *fragments: str) -> None:
    """``python evaluate.py <argv>``, in this process (tests/inprocess.py; evaluate.py's __main__ runs above):
    exit status 2 and one line on stderr, naming ``fragments``."""
    from inprocess import run_entry

    code, err = run_entry("evaluate.py", argv, capsys)
    assert code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_unknown_weights_name_is_one_line(tmp_path, capsys):
    one_line_error(capsys, ["weights=resnet20-imagenet21k", f"hydra.run.dir={tmp_path}"],
                   "resnet20-imagenet21k", "lenet5-cifar10")
    with pytest.raises(WeightsError, match="'cifar100' is not shipped for model 'resnet20'; valid: cifar10"):
        create_model("resnet20", weights="cifar100")


def test_corrupted_weights_file_is_refused_before_it_is_opened(copied_card, tmp_path, capsys):
    card_path, card = copied_card
    file = card_path.with_name(card["file"])
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    one_line_error(capsys, [f"weights={file}", f"hydra.run.dir={tmp_path / 'run'}"],
                   "does not match its card", "sha256")
    with pytest.raises(WeightsError, match="does not match its card"):
        create_model("logreg", weights=str(file))


def test_weights_for_another_model_are_one_line(copied_card, tmp_path, capsys):
    card_path, card = copied_card
    with pytest.raises(ValueError, match="are for model 'logreg', not 'resnet20'"):
        create_model("resnet20", weights=str(card_path))
    # a card that claims another model for these tensors: the tensors do not fit it
    card["model"] = {"name": "linear_svm", "options": {**card["model"]["options"], "num_classes": 100}}
    card_path.write_text(json.dumps(card))
    one_line_error(capsys, [f"weights={card_path}", f"hydra.run.dir={tmp_path / 'run'}"],
                   "does not fit model=linear_svm", "of another shape")


# ---- torchvision's ImageNet weights ------------------------------------------------

# every model whose form="torchvision" is torchvision's network
IMAGENET = ["alexnet", "resnet18", "resnet50", "vgg11_bn", "densenet121", "mobilenet_v2",
            "efficientnet_b0", "googlenet"]


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_weights_load_by_key_and_give_torchvisions_logits(name, monkeypatch):
    torch.manual_seed(0)
    theirs = torchvision.models.get_model(
        name, weights=None, **({"aux_logits": False, "init_weights": True} if name == "googlenet" else {}))
    monkeypatch.setattr(weights_module, "imagenet_state_dict", lambda model: theirs.state_dict())
    ours = create_model(name, weights="imagenet", **({"aux_logits": False} if name == "googlenet" else {}))
    assert not ours.training
    theirs.eval()
    x = torch.randn(2, 3, 64, 64)
    if name == "googlenet":
        theirs.transform_input = False
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_imagenet_weights_offline_say_where_to_put_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)  # what get_state_dict calls
    with pytest.raises(WeightsError, match=rf"put that file at {tmp_path}/checkpoints/resnet18-[0-9a-f]+\.pth"):
        create_model("resnet18", weights="imagenet")
    with pytest.raises(WeightsError, match="torchvision ships no ImageNet weights for 'resnet20'"):
        create_model("resnet20", weights="imagenet")
