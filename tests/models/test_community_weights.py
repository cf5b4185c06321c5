"""Community checkpoints load as weights: akamaster/pytorch_resnet_cifar10's CIFAR ResNets
(../shared/reference/akamaster/, with the logits that project's own code gives) through
``create_model``, torch.hub and evaluate.py; option A's zero channels as a switch."""

from __future__ import annotations

import os
import pickle
import shutil

import pytest
import torch

from helpers import ROOT
from models import create_model, list_models
from models.resnet import PadShortcut
from models.weights import WeightsError, read_community

REFERENCE = ROOT.parent / "shared" / "reference" / "akamaster"
FILES = {"resnet20": "resnet20-12fca82f.th", "resnet32": "resnet32-d509ac18.th",
         "resnet44": "resnet44-014dd654.th", "resnet56": "resnet56-4bfd9763.th"}
pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"{REFERENCE} is not here (it sits in ../shared/ "
                                                               "beside the checkout)")


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE / "reference_logits.pt", weights_only=True)


@pytest.mark.parametrize("name", FILES)
def test_split_padding_gives_the_reference_logits_and_end_padding_does_not(name, reference):
    net = create_model(name, weights=str(REFERENCE / FILES[name]))
    with torch.no_grad():
        assert torch.allclose(net(reference["input"]), reference[name], atol=1e-5, rtol=0)
    # negative control: the same weights in the zoo's default network (zeros appended after the input's channels)
    _, state = read_community(REFERENCE / FILES[name], name)
    other = create_model(name, shortcut_padding="end").eval()
    other.load_state_dict(state)
    with torch.no_grad():
        assert (other(reference["input"]) - reference[name]).abs().max() > 1.0


def test_the_two_paddings_place_the_zero_channels(capsys):
    x = torch.ones(1, 16, 4, 4)
    end = PadShortcut(16, 32, 2, "end")(x)[0, :, 0, 0]
    split = PadShortcut(16, 32, 2, "split")(x)[0, :, 0, 0]
    assert end.tolist() == [1.0] * 16 + [0.0] * 16
    assert split.tolist() == [0.0] * 8 + [1.0] * 16 + [0.0] * 8
    assert PadShortcut(16, 32, 2, "split")(x).shape == (1, 32, 2, 2)


def test_padding_is_an_option_of_every_cifar_resnet_and_refuses_other_values():
    for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
        assert name in list_models()
        create_model(name, shortcut_padding="split")
    with pytest.raises(ValueError, match=r"shortcut_padding='middle' is not valid; valid: end, split"):
        create_model("resnet20", shortcut_padding="middle")


def test_one_line_says_what_was_recognised(capsys):
    create_model("resnet20", weights=str(REFERENCE / FILES["resnet20"]))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "akamaster/pytorch_resnet_cifar10" in lines[0] and "shortcut_padding='split'" in lines[0]
    assert "data.normalize=imagenet" in lines[0]
    assert (create_model("resnet20", weights=str(REFERENCE / FILES["resnet20"])).built_with["shortcut_padding"]
            == "split")


def test_torch_hub_loads_a_community_checkpoint(reference):
    net = torch.hub.load(str(ROOT), "resnet32", source="local", weights=str(REFERENCE / FILES["resnet32"]))
    with torch.no_grad():
        assert torch.allclose(net(reference["input"]), reference["resnet32"], atol=1e-5, rtol=0)


def test_the_card_it_writes_names_their_data_and_normalization():
    card, _ = read_community(REFERENCE / FILES["resnet56"])
    assert card["model"] == {"name": "resnet56", "options": {"shortcut": "A", "shortcut_padding": "split"}}
    assert card["data"]["normalization"]["shift"] == [0.485, 0.456, 0.406]
    # best_prec1; its README states 6.61 % error
    assert card["metrics"]["test_acc_in_file"] == pytest.approx(0.9362, abs=1e-4)


# ---- files that are not what they claim: one line (WeightsError), nothing run ---------------------------

def damaged(tmp_path, name: str, keep_hash_in_name: bool = True):
    source = REFERENCE / FILES[name]
    target = tmp_path / (source.name if keep_hash_in_name else f"{name}.th")
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def refused(weights, model="resnet20", **options) -> str:
    with pytest.raises(WeightsError) as caught:
        create_model(model, weights=str(weights), **options)
    text = str(caught.value)
    assert "\n" not in text
    return text


def test_a_damaged_file_is_refused_by_the_hash_its_name_carries(tmp_path):
    assert "does not match the sha256 its name carries (12fca82f" in refused(damaged(tmp_path, "resnet20"))


def test_a_damaged_file_without_a_hash_in_its_name_is_one_line(tmp_path):
    assert "is not a readable weights file" in refused(damaged(tmp_path, "resnet20", keep_hash_in_name=False))


def test_another_depth_is_named(tmp_path):
    text = refused(REFERENCE / FILES["resnet32"], model="resnet20")
    assert "ResNet-32 (5 blocks per stage), not resnet20" in text


def test_an_option_that_breaks_the_file_is_refused_not_applied():
    text = refused(REFERENCE / FILES["resnet20"], shortcut_padding="end")
    assert "needs shortcut_padding='split', got shortcut_padding='end'" in text


def test_a_file_of_an_unknown_layout_is_one_line(tmp_path):
    other = tmp_path / "model.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}, "epoch": 3}, other)
    text = refused(other)
    assert "has no card beside it (model.json)" in text and "akamaster/pytorch_resnet_cifar10" in text


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def test_a_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    canary = tmp_path / "canary"
    payload = Payload()
    payload.canary = canary
    hostile = tmp_path / "resnet20.th"
    hostile.write_bytes(pickle.dumps({"state_dict": payload}))
    assert "is not a readable weights file" in refused(hostile)
    assert not canary.exists()


def test_evaluate_py_refuses_a_damaged_community_file_in_one_line(tmp_path, capsys):
    from test_trust import one_line, run_entry

    bad = damaged(tmp_path, "resnet44")
    shutil.copy(bad, tmp_path / "copy.th")
    code, stderr = run_entry("evaluate.py", [f"weights={bad}", "data.root=unused", f"hydra.run.dir={tmp_path / 'run'}"],
                             capsys)
    assert code == 2
    assert "does not match the sha256 its name carries (014dd654" in one_line(stderr)


@pytest.mark.slow
def test_evaluate_py_tests_a_community_checkpoint_on_the_jpeg_copy(cifar10_jpeg, tmp_path):
    """The published ResNet-20 (trained on the lossless originals) on the 10,000 JPEG test images, normalized
    as it was trained: the README's figure for the shift the copy causes."""
    import json

    from helpers import run_script

    root, cache = cifar10_jpeg
    result = run_script("evaluate.py", f"weights={REFERENCE / FILES['resnet20']}", f"data.root={root}",
                        f"paths.data_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_images"] == 10000
    assert metrics["test/acc"] == pytest.approx(0.8103, abs=5e-4)
