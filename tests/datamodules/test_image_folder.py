"""The image_folder data module on the real CIFAR-10 images in ../shared/data/."""

from __future__ import annotations

import shutil
import tarfile
from collections import Counter

import pytest
import torch

from core.errors import UserError
from datamodules import DataError, ImageFolderDataModule
from datamodules.image_folder import Checked
from helpers import SHARED_DATA
from models import create_model
from training.module import ImageClassifier

ARCHIVE = SHARED_DATA / "cifar10-jpeg.tar.gz"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def cifar_jpegs(tmp_path_factory):
    """20 train and 5 test images per class, extracted from the real archive."""
    if not ARCHIVE.is_file():
        pytest.skip(f"{ARCHIVE} is not here (it sits in ../shared/data/ beside the checkout)")
    root = tmp_path_factory.mktemp("cifar10_jpeg")
    wanted = {"train": 20, "test": 5}
    taken: Counter = Counter()
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3 or parts[-3] not in wanted:
                continue
            split, cls = parts[-3], parts[-2]
            if taken[split, cls] < wanted[split]:
                taken[split, cls] += 1
                member.name = f"{split}/{cls}/{parts[-1]}"
                archive.extract(member, root, filter="data")
            if len(taken) == 20 and all(taken[k] == wanted[k[0]] for k in taken):
                break
    return root


def test_reads_real_cifar10_images_and_finds_the_classes(cifar_jpegs, tmp_path):
    dm = ImageFolderDataModule(root=str(cifar_jpegs), data_dir=str(tmp_path), val_size=20, batch_size=8, seed=0)
    assert dm.classes == CLASSES and dm.num_classes == 10
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (180, 20, 50)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    # statistics of real CIFAR-10 images (CIFAR-10's own means are 0.49, 0.48, 0.45)
    assert all(0.35 < m < 0.6 for m in dm.shift) and all(0.15 < s < 0.35 for s in dm.scale)


def test_a_model_takes_a_training_step_on_them(cifar_jpegs, tmp_path):
    dm = ImageFolderDataModule(root=str(cifar_jpegs), data_dir=str(tmp_path), val_size=20, batch_size=16, seed=0)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    net = create_model("lenet5", num_classes=dm.num_classes, in_channels=3)
    module = ImageClassifier(net, num_classes=dm.num_classes)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    before = [p.detach().clone() for p in net.parameters()]
    loss = module.training_step((x, y), 0) if False else module._step((x, y))[0]
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and 1.5 < loss.item() < 3.5  # about ln(10) for an untrained net
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_the_tensor_path_decodes_once_into_a_cache_and_sees_the_torchvision_paths_pixels(
        cifar_jpegs, tmp_path, monkeypatch):
    root = shutil.copytree(cifar_jpegs, tmp_path / "images")  # a file of it is changed below
    options = dict(root=str(root), data_dir=str(tmp_path / "data"), val_size=20, batch_size=25, seed=0,
                   stats_samples=100)
    tensor, torchvision = (ImageFolderDataModule(pipeline="tensor", **options),
                           ImageFolderDataModule(pipeline="torchvision", **options))
    tensor.setup()
    torchvision.setup()
    assert (sorted((tmp_path / "data" / "image_folder_cache").glob("*.pt"))
            == sorted([tensor.cache_path("train"), tensor.cache_path("test")]))
    # the same 100 images, the same pixels
    assert tensor.shift == torchvision.shift and tensor.scale == torchvision.scale
    assert tensor.train_set.indices == torchvision.train_set.indices
    for split in ("val", "test"):
        ours = torch.cat([x for x, _ in getattr(tensor, f"{split}_dataloader")()])
        theirs = torch.cat([x for x, _ in getattr(torchvision, f"{split}_dataloader")()])
        assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-5)
    # a second run reads the cache and decodes nothing
    monkeypatch.setattr("datamodules.image_folder.DataLoader", lambda *a, **k: pytest.fail("decoded again"))
    again = ImageFolderDataModule(pipeline="tensor", **options)
    again.setup()
    assert torch.equal(again.train_set.source.images, tensor.train_set.source.images)
    monkeypatch.undo()
    # another image size is another cache; a changed file makes the cache stale
    assert (ImageFolderDataModule(pipeline="tensor", image_size=16, **options).cache_path("test")
            != tensor.cache_path("test"))
    cat, dog = (next((root / "test" / name).iterdir()) for name in ("cat", "dog"))
    cat.write_bytes(dog.read_bytes())
    changed = ImageFolderDataModule(pipeline="tensor", **options)
    changed.setup()
    assert not torch.equal(changed.test_set.source.images, tensor.test_set.source.images)


@pytest.mark.parametrize("pipeline", ["tensor", "torchvision"])
def test_an_evaluation_with_given_statistics_reads_the_test_split_alone(cifar_jpegs, tmp_path, monkeypatch, pipeline):
    """A weights card's evaluation: the training images are neither decoded nor checked, and the test batches are
    those of a full set-up with the same statistics."""
    stats = {"shift": [0.5, 0.4, 0.3], "scale": [0.25, 0.25, 0.25]}
    options = dict(root=str(cifar_jpegs), data_dir=str(tmp_path / "data"), val_size=20, batch_size=25,
                   pipeline=pipeline, stats=stats)
    full = ImageFolderDataModule(**options)
    full.setup("fit")
    expected = torch.cat([x for x, _ in full.test_dataloader()])
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
    read = []

    class Recorded(Checked):  # every file decoded or checked passes through Checked
        def __init__(self, samples, transform=None):
            read.extend(samples)
            super().__init__(samples, transform)

    monkeypatch.setattr("datamodules.image_folder.Checked", Recorded)
    alone = ImageFolderDataModule(**options)
    alone.setup("test")
    assert read and all("/test/" in path for path, _ in read), read[:3]
    assert alone.train_set is None and (alone.shift, alone.scale) == (stats["shift"], stats["scale"])
    assert torch.equal(torch.cat([x for x, _ in alone.test_dataloader()]), expected)
    if pipeline == "tensor":
        assert list((tmp_path / "data" / "image_folder_cache").glob("*.pt")) == [alone.cache_path("test")]


def test_an_earlier_versions_single_cache_file_is_named_and_left_alone(cifar_jpegs, tmp_path, caplog):
    """Before per-split caches, one <key>.pt held both splits: nothing reads it now, and it is the user's to delete."""
    module = ImageFolderDataModule(root=str(cifar_jpegs), data_dir=str(tmp_path), pipeline="tensor", val_size=20)
    earlier = module.cache_path("train").with_name(module.cache_path("train").name.replace("-train", ""))
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"x" * 2**20)
    module.setup()
    warned = [r.getMessage() for r in caplog.records if "earlier version" in r.getMessage()]
    assert warned and warned[0].startswith(f"{earlier} (1 MiB) is an earlier version's cache") and earlier.is_file()


@pytest.mark.parametrize("stats_samples", [0, -5, 2.5])
def test_stats_samples_is_checked_when_built(tmp_path, stats_samples):
    with pytest.raises(UserError, match=rf"^data\.stats_samples must be an integer >= 1, got {stats_samples!r}$"):
        ImageFolderDataModule(root=str(tmp_path), stats_samples=stats_samples)


def test_a_folder_without_train_and_test_is_refused(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="no test/ folder"):
        ImageFolderDataModule(root=str(tmp_path))
