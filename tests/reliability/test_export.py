"""Issue 20, item 3: export is all or nothing, and never replaces another run's or data set's weights.

``evaluate.py ckpt_path=<a digits run> export=weights`` overwrote weights/lenet5-cifar10.pth, then
crashed, leaving the shipped file failing its own sha256 check. Now the file is named after the run's
data set, both files are built and verified in a temporary folder inside the destination and then moved
in, a failure anywhere leaves the folder byte-identical, and ``force=true`` is needed to replace weights
of another run or data set."""

from __future__ import annotations

import json

import pytest
import torch

from inprocess import digest, one_line, run_entry
from models import create_model
from models.weights import WeightsError, sha256


def test_exporting_a_digits_run_leaves_the_shipped_cifar10_weights_byte_identical(tiny_run, shipped_card, tmp_path,
                                                                                  monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shipped = shipped_card.parent
    before = digest(shipped)
    code, err = run_entry("evaluate.py", [f"ckpt_path={tiny_run[0]}", f"export={shipped}"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    assert {k: v for k, v in digest(shipped).items() if k.startswith("lenet5-cifar10")} == before
    assert sorted(p.name for p in shipped.iterdir()) == ["lenet5-cifar10.json", "lenet5-cifar10.pth",
                                                         "lenet5-digits.json", "lenet5-digits.pth"]
    card = json.loads((shipped / "lenet5-digits.json").read_text())
    assert card["data"]["name"] == "digits" and card["sha256"] == sha256(shipped / "lenet5-digits.pth")
    assert card["source"]["checkpoint_sha256"] and str(tmp_path) not in json.dumps(card["data"])
    net = create_model("lenet5", weights=str(shipped / "lenet5-digits.pth"))  # the card's sha256 and options check out
    best = torch.load(next(tiny_run[0].glob("checkpoints/epoch*.ckpt")), map_location="cpu",
                      weights_only=True)["state_dict"]
    # the best checkpoint's
    assert all(torch.equal(value, best[f"net.{key}"]) for key, value in net.state_dict().items())


def test_weights_of_another_run_are_replaced_only_with_force(tiny_run, tmp_path, capsys):
    from reporting.weights import export

    folder = tmp_path / "weights"
    first = export(tiny_run[0], folder, data_dir=str(tmp_path / "data"))
    card = json.loads(first.read_text())
    card["source"]["checkpoint_sha256"] = "0" * 64  # as if another run had exported it
    first.write_text(json.dumps(card))
    before = digest(folder)
    with pytest.raises(WeightsError, match="another run's or another data set's weights.*force=true"):
        export(tiny_run[0], folder, data_dir=str(tmp_path / "data"))
    assert digest(folder) == before
    export(tiny_run[0], folder, data_dir=str(tmp_path / "data"), force=True)
    assert json.loads(first.read_text())["source"]["checkpoint_sha256"] != "0" * 64
    export(tiny_run[0], folder, data_dir=str(tmp_path / "data"))  # the same run again: no force needed


@pytest.mark.parametrize("fails_at", ["measuring", "moving the card in"])
def test_a_failure_half_way_leaves_the_weights_folder_byte_identical(fails_at, tiny_run, tmp_path, monkeypatch):
    import reporting.weights
    from reporting.weights import export

    folder = tmp_path / "weights"
    export(tiny_run[0], folder, data_dir=str(tmp_path / "data"))
    card = json.loads((folder / "lenet5-digits.json").read_text())
    card["metrics"]["test_acc"] = 0.123  # so that a new export would differ from what is there
    (folder / "lenet5-digits.json").write_text(json.dumps(card))
    before = digest(folder)
    if fails_at == "measuring":
        monkeypatch.setattr(reporting.weights, "test_counts",
                            lambda *a: (_ for _ in ()).throw(RuntimeError("killed")))
        error = RuntimeError
    else:
        real = reporting.weights.os.replace

        def replace(source, target):
            if str(target).endswith(".json") and "weights" in str(target) and ".export-" not in str(target):
                raise OSError(28, "No space left on device")
            return real(source, target)

        monkeypatch.setattr(reporting.weights.os, "replace", replace)
        error = ValueError  # WriteError: one line
    with pytest.raises(error):
        export(tiny_run[0], folder, data_dir=str(tmp_path / "data"))
    assert digest(folder) == before  # the weights, the card, and no staging folder left


@pytest.mark.parametrize("value,says", [("maybe", "true or false")])
def test_force_is_a_checked_knob(value, says, tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_entry("evaluate.py", [f"ckpt_path={tiny_run[0]}", "export=weights", f"force={value}"], capsys)
    assert code == 2 and "force" in one_line(err) and says in one_line(err)
    assert not (tmp_path / "weights").exists()


def test_a_run_without_a_best_checkpoint_exports_its_final_model_under_the_name_given(tiny_args, tmp_path, capsys):
    """A fine-tune keeps no best checkpoint (its validation images may be in the starting weights' training
    set): its card says the final model was exported, with no selection, and ``export_name`` keeps it apart
    from the from-scratch weights of the same model and data."""
    run_dir = tmp_path / "run"
    code, err = run_entry("train.py", [*tiny_args, "callbacks.model_checkpoint=null", f"hydra.run.dir={run_dir}"],
                          capsys, stage="run")
    assert code in (0, None), err[-3000:]
    folder = tmp_path / "weights"
    code, err = run_entry("evaluate.py", [f"ckpt_path={run_dir}", f"export={folder}",
                                          "export_name=lenet5-digits-finetuned"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    assert sorted(p.name for p in folder.iterdir()) == ["lenet5-digits-finetuned.json", "lenet5-digits-finetuned.pth"]
    card = json.loads((folder / "lenet5-digits-finetuned.json").read_text())
    assert card["selected"].startswith("the final model: last.ckpt, no selection") and card["started_from"] is None
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    net = create_model("lenet5", weights=str(folder / "lenet5-digits-finetuned.pth"))
    assert all(torch.equal(value, final[f"net.{key}"]) for key, value in net.state_dict().items())


@pytest.mark.parametrize("name, says", [
    ("../elsewhere", "export_name='../elsewhere' is not valid: it must be a file name"),
    ("a b", "export_name='a b' is not valid"),
])
def test_a_bad_export_name_is_one_line_and_writes_nothing(name, says, tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_entry("evaluate.py", [f"ckpt_path={tiny_run[0]}", "export=weights", f"export_name={name}"], capsys)
    assert code == 2 and says in one_line(err)
    assert list(tmp_path.iterdir()) == []  # no weights folder, no run dir


def test_export_name_without_export_says_what_is_missing(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_entry("evaluate.py", [f"ckpt_path={tiny_run[0]}", "export_name=x"], capsys)
    assert code == 2 and "give export=<folder> too" in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_a_fine_tune_card_names_the_community_weights_it_started_from_and_their_licence():
    from helpers import ROOT
    from reporting.weights import starting_weights

    path = ROOT.parent / "shared" / "reference" / "akamaster" / "resnet20-12fca82f.th"
    if not path.is_file():
        pytest.skip(f"{path} is not on this machine")
    found = starting_weights(str(path))
    assert found == {"file": "resnet20-12fca82f.th", "file_sha256": sha256(path),
                     "source": "akamaster/pytorch_resnet_cifar10", "licence": "BSD 2-clause",
                     "trained_on": "CIFAR-10, the lossless originals (all 50,000 training images)"}
    assert starting_weights("no/such/file.th") == {"file": "file.th", "file_sha256": None}


# ---- which data set a card names: by what the folder holds, never by the folder's name ----------------------

def test_the_jpeg_copy_is_cifar10_on_its_card_whatever_its_folder_is_called(cifar10_jpeg, tmp_path):
    """A run trained from ``data.root=/work/data`` (the copy extracted under another name) exported as
    ``<model>-data`` with ``"copy": "data"``; the copy is recognised by its images' sha256 now."""
    from datamodules import ImageFolderDataModule
    from reporting.weights import KNOWN_COPIES, data_identity

    root, cache = cifar10_jpeg
    (tmp_path / "data").symlink_to(root, target_is_directory=True)
    identity = data_identity(ImageFolderDataModule(root=str(tmp_path / "data"), data_dir=str(cache)))
    assert identity["name"] == "cifar10" and identity["images_sha256"] in KNOWN_COPIES
    assert identity["copy"].startswith("CIFAR-10, all 60,000 images re-encoded as 32x32 JPEG")


def test_a_folder_called_like_the_copy_keeps_its_own_name_and_export_reads_the_folder_given(tmp_path, capsys):
    """Two pet photos in a folder named ``cifar10-jpeg`` are not CIFAR-10: the card names the folder and its
    images' sha256. The run's folder moved since training: ``data.root=`` names where it is now, and the card
    is measured there (without it, one line says the stored folder is gone)."""
    from datamodules import ImageFolderDataModule
    from helpers import image_folder

    trained_from = image_folder(tmp_path / "cifar10-jpeg", per_class=4)
    run_dir = tmp_path / "run"
    code, err = run_entry("train.py", ["experiment=smoke", "trainer.max_epochs=1", "data=image_folder",
                                       f"data.root={trained_from}", "data.val_size=2", "data.num_workers=0",
                                       "data.batch_size=2", f"paths.data_dir={tmp_path / 'cache'}",
                                       f"hydra.run.dir={run_dir}"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    folder = tmp_path / "weights"
    code, err = run_entry("evaluate.py", [f"ckpt_path={run_dir}", f"export={folder}",
                                          f"paths.data_dir={tmp_path / 'cache'}"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    card = json.loads((folder / "lenet5-cifar10-jpeg.json").read_text())
    images = ImageFolderDataModule(root=str(trained_from)).fingerprint()
    assert card["data"]["name"] == "cifar10-jpeg" and card["data"]["copy"] == "the image folder 'cifar10-jpeg'"
    assert card["data"]["images_sha256"] == images and card["data"]["classes"] == ["cat", "dog"]

    moved = trained_from.rename(tmp_path / "pets")
    code, err = run_entry("evaluate.py", [f"ckpt_path={run_dir}", f"export={folder}",
                                          f"paths.data_dir={tmp_path / 'cache'}"], capsys)
    assert code == 2 and "has no train/ folder" in one_line(err)
    code, err = run_entry("evaluate.py", [f"ckpt_path={run_dir}", f"export={folder}", f"data.root={moved}",
                                          f"paths.data_dir={tmp_path / 'cache'}"], capsys, stage="run")
    assert code in (0, None), err[-3000:]
    card = json.loads((folder / "lenet5-pets.json").read_text())
    assert card["data"]["images_sha256"] == images and card["metrics"]["test_images"] == 8
