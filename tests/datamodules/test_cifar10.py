"""The cifar10 data module on a small data set written in CIFAR-10's own
on-disk format (pickled batches), so torchvision's real reader runs."""

from __future__ import annotations

import hashlib
import pickle
from urllib.error import URLError

import numpy as np
import pytest
import torch
from torchvision import datasets

from datamodules import DataError, TorchvisionDataModule

PER_BATCH, TEST = 40, 30


def write_cifar10(root, seed: int = 0) -> np.ndarray:
    """data_batch_1..5, test_batch and batches.meta as CIFAR-10 ships them:
    each batch a pickled dict with "data" (N, 3072) uint8 in CHW order and "labels"."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    channel_means = np.array([40, 120, 200])  # distinct per channel, so standardization is checkable
    batches = {}
    for name, n in [*[(f"data_batch_{i}", PER_BATCH) for i in range(1, 6)], ("test_batch", TEST)]:
        images = np.clip(rng.normal(channel_means[None, :, None, None], 30, (n, 3, 32, 32)), 0, 255).astype(np.uint8)
        labels = [i % 10 for i in range(n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": images.reshape(n, -1), "labels": labels, "batch_label": name}, f)
        batches[name] = images
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"]}, f)
    return batches


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    batches = write_cifar10(tmp_path)
    # torchvision checks each file against the real CIFAR-10's md5; point it at ours,
    # so its integrity check runs too
    folder = tmp_path / "cifar-10-batches-py"
    md5 = lambda name: hashlib.md5((folder / name).read_bytes()).hexdigest()  # noqa: E731
    cls = datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[name, md5(name)] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, md5(name)] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})
    return tmp_path, batches


def make(root, **kwargs):
    options = dict(dataset="cifar10", data_dir=str(root), download=False, batch_size=16, val_size=20, seed=1)
    return TorchvisionDataModule(**{**options, **kwargs})


def test_reads_cifar10_format_into_splits_of_the_right_size_shape_and_dtype(cifar_dir):
    root, batches = cifar_dir
    dm = make(root)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (5 * PER_BATCH - 20, 20, TEST)
    assert dm.classes[0] == "airplane" and dm.num_classes == 10 and dm.in_channels == 3
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # the test split is test_batch, image for image
    raw_first = torch.from_numpy(batches["test_batch"][0]).float() / 255
    expected = (raw_first - torch.tensor(dm.shift)[:, None, None]) / torch.tensor(dm.scale)[:, None, None]
    assert torch.allclose(dm.test_set[0][0], expected, atol=1e-5)


def test_validation_split_is_stratified_fixed_by_seed_and_disjoint(cifar_dir):
    root, _ = cifar_dir
    a, b, c = make(root, seed=1), make(root, seed=1), make(root, seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert a.val_set.indices == b.val_set.indices != c.val_set.indices
    assert not set(a.val_set.indices) & set(a.train_set.indices)
    labels = torch.tensor([a.val_set.source.targets[i] for i in a.val_set.indices])
    assert torch.bincount(labels, minlength=10).tolist() == [2] * 10


def test_standardization_uses_training_split_statistics(cifar_dir):
    root, _ = cifar_dir
    dm = make(root, augment="none")
    dm.setup()
    assert dm.shift[0] < dm.shift[1] < dm.shift[2]  # computed, not CIFAR's hard-coded means
    train = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])
    assert torch.allclose(train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)


def test_augmentation_on_training_images_only(cifar_dir):
    root, _ = cifar_dir
    dm = make(root, augment="standard")
    dm.setup()
    torch.manual_seed(0)
    train_draws = [dm.train_set[0][0] for _ in range(6)]
    assert any(not torch.equal(train_draws[0], d) for d in train_draws[1:])
    for split in (dm.val_set, dm.test_set):
        assert torch.equal(split[0][0], split[0][0])
    plain = make(root, augment="none")
    plain.setup()
    assert torch.equal(dm.val_set[3][0], plain.val_set[3][0])
    assert torch.equal(dm.test_set[3][0], plain.test_set[3][0])


def test_absent_data_without_download_names_the_directory(tmp_path):
    dm = make(tmp_path / "empty")
    with pytest.raises(DataError, match=r"empty/cifar-10-batches-py.*download"):
        dm.prepare_data()


def test_failed_download_says_where_and_how(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    dm = make(tmp_path / "offline", download=True)
    with pytest.raises(DataError, match=r"offline.*could not be downloaded.*cifar-10-python.tar.gz") as refused:
        dm.prepare_data()
    # the same line answers train.py and evaluate.py, which takes no data= (it suggested data=digits)
    assert "data.data_dir" in str(refused.value) and "data=" not in str(refused.value)


def test_bad_options_are_refused_with_the_valid_values(tmp_path):
    with pytest.raises(ValueError, match="imagenet.*cifar10, cifar100, mnist"):
        TorchvisionDataModule(dataset="imagenet", data_dir=str(tmp_path))
    for download in ("maybe", "false", 0):  # a string or a number would be taken for a truth value
        with pytest.raises(DataError, match=rf"^data\.download must be true or false, got {download!r}$"):
            TorchvisionDataModule(data_dir=str(tmp_path), download=download)
    with pytest.raises(ValueError, match="batch_size.*0"):
        make(tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="robustly.*standardize"):
        make(tmp_path, normalize="robustly")
