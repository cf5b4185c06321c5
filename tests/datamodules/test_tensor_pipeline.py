"""The device-resident data path: its augmentations against torchvision's in
distribution, what it leaves untouched, its seeding, and how it meets Lightning."""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
from torchvision.transforms import v2

from datamodules import DigitsDataModule
from datamodules.base import TensorImages
from datamodules.tensor_pipeline import DeviceLoader, EpochSampler, cutout, random_crop
from datamodules.transforms import Cutout
from helpers import ROOT, final_metrics
from models import create_model
from training.module import ImageClassifier

H = W = 8
PAD = 3
DRAWS = 4000


def position_image() -> torch.Tensor:
    """(1, 3, 8, 8) uint8 whose pixel (r, c) holds 1 + 8r + c in every channel: a crop tells where it came from."""
    values = (1 + torch.arange(H * W)).view(1, 1, H, W).to(torch.uint8)
    return values.expand(1, 3, H, W).clone()


def offsets_and_flip(crop: torch.Tensor) -> tuple[int, int, bool]:
    """Recover (dy, dx) in the padded image and the mirroring from one crop of ``position_image``."""
    plane = crop[0].long()
    i, j = (plane > 0).nonzero()[0].tolist()  # any pixel that came from the image, not the padding
    r, c = divmod(int(plane[i, j]) - 1, W)
    flipped = plane[i].nonzero().numel() > 1 and bool((plane[i][plane[i] > 0].diff() < 0).all())
    column = W - 1 - j if flipped else j
    return r - i + PAD, c - column + PAD, flipped


def chi_square(counts: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.fixture(scope="module")
def tensor_draws():
    image = position_image().expand(DRAWS, 3, H, W)
    out = random_crop(image, PAD, torch.Generator().manual_seed(0), flip=True)
    assert out.dtype == torch.uint8 and out.shape == image.shape
    return [offsets_and_flip(crop) for crop in out]


def test_crop_offsets_are_uniform_over_the_padded_range(tensor_draws):
    k = 2 * PAD + 1
    for axis in (0, 1):
        counts = torch.bincount(torch.tensor([d[axis] for d in tensor_draws]), minlength=k).double()
        assert len(counts) == k  # no offset outside 0..2p
        # chi-square with 6 degrees of freedom: P(> 22.5) = 0.001
        assert chi_square(counts, torch.full((k,), DRAWS / k)) < 22.5, counts
    assert len({d[:2] for d in tensor_draws}) == k * k  # every (dy, dx) pair occurs


def test_flips_happen_with_probability_one_half(tensor_draws):
    flips = sum(d[2] for d in tensor_draws)
    assert abs(flips - DRAWS / 2) < 4 * math.sqrt(DRAWS / 4), flips  # 4 standard deviations


def test_crop_and_flip_match_torchvision_in_distribution(tensor_draws):
    torchvision_tf = v2.Compose([v2.RandomCrop(H, padding=PAD), v2.RandomHorizontalFlip()])
    torch.manual_seed(0)
    image = position_image()[0]
    theirs = [offsets_and_flip(torchvision_tf(image)) for _ in range(2000)]
    k = 2 * PAD + 1
    for axis in (0, 1):  # two-sample chi-square, 6 degrees of freedom
        a = torch.bincount(torch.tensor([d[axis] for d in tensor_draws]), minlength=k).double()
        b = torch.bincount(torch.tensor([d[axis] for d in theirs]), minlength=k).double()
        pooled = (a + b) / (a.sum() + b.sum())
        statistic = chi_square(a, pooled * a.sum()) + chi_square(b, pooled * b.sum())
        assert statistic < 22.5, (a, b)
    share_theirs = sum(d[2] for d in theirs) / len(theirs)
    assert abs(share_theirs - sum(d[2] for d in tensor_draws) / DRAWS) < 0.06


def test_crop_without_flip_never_mirrors_and_keeps_the_padding_black():
    image = torch.full((500, 3, H, W), 200, dtype=torch.uint8)
    out = random_crop(image, PAD, torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert set(out.unique().tolist()) == {0, 200}
    draws = [offsets_and_flip(c) for c in random_crop(position_image().expand(300, 3, H, W), PAD,
                                                      torch.Generator().manual_seed(2))]
    assert not any(d[2] for d in draws)


def test_cutout_zeroes_one_square_per_image_like_the_per_image_cutout():
    n = 5000
    batch = torch.ones(n, 3, 16, 16)
    out = cutout(batch.clone(), 8, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == batch.shape
    zeroed = out[:, 0] == 0
    rows, cols = zeroed.any(2).sum(1), zeroed.any(1).sum(1)
    # one clipped square
    assert torch.equal(zeroed.sum((1, 2)), rows * cols) and (rows <= 8).all() and (rows >= 4).all()
    assert torch.equal(out[:, 0] == 0, out[:, 2] == 0)  # the same square in every channel
    torch.manual_seed(0)
    per_image = torch.stack([Cutout(8)(torch.ones(1, 16, 16))[0] == 0 for _ in range(n)])
    # how often each row and each column is hit: the same profile (about 5 standard deviations of slack)
    for dim in (1, 2):
        ours, theirs = zeroed.any(dim).double().mean(0), per_image.any(dim).double().mean(0)
        assert torch.allclose(ours, theirs, atol=0.05), (ours, theirs)
    assert ours[0] < 0.35 and ours[8] > 0.45  # border rows are hit less often than the centre


def make(pipeline: str, **kwargs) -> DigitsDataModule:
    dm = DigitsDataModule(seed=3, batch_size=50, pipeline=pipeline, **kwargs)
    dm.setup()
    return dm


def test_validation_and_test_batches_are_the_untouched_images_of_the_torchvision_path():
    # cutout = crop + flip + cutout: every augmentation of the tensor path is on, and none may reach these splits
    tensor, torchvision = make("tensor", augment="cutout"), make("torchvision", augment="cutout")
    assert isinstance(tensor.val_dataloader(), DeviceLoader)
    for split in ("val", "test"):
        expected = [x for x, _ in getattr(torchvision, f"{split}_dataloader")()]
        for _ in range(2):  # again, and again the same
            batches = list(getattr(tensor, f"{split}_dataloader")())
            assert [len(x) for x, _ in batches] == [len(x) for x in expected]
            for (x, _), x_ref in zip(batches, expected):
                assert x.dtype == torch.float32 and torch.allclose(x, x_ref, atol=1e-5)
    labels = torch.cat([y for _, y in tensor.test_dataloader()])
    assert torch.equal(labels, tensor.test_set.source.targets)


def test_training_batches_are_normalized_augmented_and_cover_the_split_once_per_epoch():
    dm = make("tensor", augment="crop")
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == math.ceil(1293 / 50)
    x = torch.cat([b[0] for b in batches])
    assert x.shape == (1293, 1, 32, 32) and x.dtype == torch.float32
    labels = torch.cat([b[1] for b in batches])
    assert torch.equal(labels.sort().values, dm.train_set.source.targets[dm.train_set.indices].sort().values)
    plain = torch.stack([dm.val_set.transform(img) for img in dm.train_set.source.images[dm.train_set.indices]])
    assert abs(x.mean() - plain.mean()) < 0.15 and not torch.allclose(x.sort(0).values, plain.sort(0).values)


def test_the_same_seed_gives_the_same_batches_and_each_epoch_new_ones():
    a, b, c = (make("tensor", augment="crop").train_dataloader() for _ in range(3))
    c.seed = c.sampler.seed = 4
    first_a, first_b, first_c = next(iter(a)), next(iter(b)), next(iter(c))
    assert torch.equal(first_a[0], first_b[0]) and torch.equal(first_a[1], first_b[1])
    assert not torch.equal(first_a[1], first_c[1])
    list(a)  # a full pass moves a to its next epoch
    assert not torch.equal(next(iter(a))[1], first_a[1])
    a.sampler.set_epoch(0)  # as Lightning does at every epoch start
    assert torch.equal(next(iter(a))[0], first_a[0])


def test_autoaugment_and_randaugment_are_refused_by_the_tensor_path_and_served_by_torchvision_under_auto():
    for augment in ("autoaugment", "randaugment"):
        with pytest.raises(ValueError, match=rf"augment='{augment}'.*pipeline=tensor.*none, crop, standard, cutout"):
            DigitsDataModule(augment=augment, pipeline="tensor")
        auto = make("auto", augment=augment)
        assert isinstance(auto.train_dataloader(), torch.utils.data.DataLoader)
    assert isinstance(make("auto", augment="standard").train_dataloader(), DeviceLoader)
    with pytest.raises(ValueError, match="pipeline='gpu'.*auto, tensor, torchvision"):
        DigitsDataModule(pipeline="gpu")


def test_distributed_ranks_get_disjoint_equal_shards_of_one_permutation():
    shards = [EpochSampler(103, True, seed=0, rank=r, world_size=4).order(torch.device("cpu")) for r in range(4)]
    assert {len(s) for s in shards} == {103 // 4}
    together = torch.cat(shards)
    assert len(together.unique()) == len(together)
    evaluation = [EpochSampler(103, False, seed=0, rank=r, world_size=4).order(torch.device("cpu")) for r in range(4)]
    assert torch.equal(torch.cat(evaluation).sort().values, torch.arange(103))


def test_lightning_fits_from_it_and_sets_each_epochs_shuffle():
    dm = DigitsDataModule(seed=3, batch_size=64, pipeline="tensor", augment="crop")
    first_labels = []

    class FirstBatch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            assert batch[0].device == pl_module.device and batch[0].dtype == torch.float32
            if batch_idx == 0:
                first_labels.append(batch[1].clone())

    net = create_model("lenet5", num_classes=10, in_channels=1)
    module = ImageClassifier(net, optimizer=functools.partial(torch.optim.SGD, lr=0.01), num_classes=10)
    trainer = L.Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[FirstBatch()])
    trainer.fit(module, datamodule=dm)
    loader = DigitsDataModule(seed=3, batch_size=64, pipeline="tensor", augment="crop")
    loader.setup()
    expected = loader.train_dataloader()
    # epoch e's batches are those of set_epoch(e), though no epoch ran fully
    for epoch, labels in enumerate(first_labels):
        expected.sampler.set_epoch(epoch)
        assert torch.equal(next(iter(expected))[1], labels)
    assert not torch.equal(first_labels[0], first_labels[1])


def test_images_must_be_uint8():
    with pytest.raises(AssertionError, match="uint8"):
        DeviceLoader(torch.zeros(4, 1, 8, 8), torch.zeros(4), torch.arange(4), 2, [0.0], [1.0])
    images = TensorImages(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4))
    loader = DeviceLoader(images.images, images.targets, torch.arange(4), 3, [0.0], [1 / 255])
    assert [len(x) for x, _ in loader] == [3, 1]


@pytest.mark.slow  # two trainings, about 12 s; default: the batches themselves (distribution, coverage, seeds) above
def test_training_on_digits_reaches_the_same_accuracy_on_both_paths(tmp_path):
    # the two runs side by side, one core each (about the time of one run on a 2-core machine)
    runs = {
        pipeline: subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "experiment=smoke", f"data.pipeline={pipeline}",
             "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / pipeline}"],
            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for pipeline in ("tensor", "torchvision")
    }
    accuracy = {}
    for pipeline, run in runs.items():
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-3000:]
        accuracy[pipeline] = final_metrics(stdout)["test/acc"]
        log = (tmp_path / pipeline / "train.log").read_text()
        assert ("data.pipeline=tensor:" in log) == (pipeline == "tensor"), log[-2000:]  # each ran the path it names
    # 360 test digits; 5 epochs from the same seed, shuffled by different generators: a few digits apart
    assert min(accuracy.values()) >= 0.9, accuracy
    assert abs(accuracy["tensor"] - accuracy["torchvision"]) <= 0.04, accuracy


DDP_SCRIPT = '''
import functools, json, sys
import lightning as L
import torch
from datamodules import RandomImagesDataModule
from models import create_model
from training.module import ImageClassifier

class Seen(L.Callback):  # the first pixels of every image a rank trains and tests on (random pixels: unique)
    train, test = [], []
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train += batch[0][:, 0, 0, :6].tolist()
    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.test += batch[0][:, 0, 0, :6].tolist()

dm = RandomImagesDataModule(size=203, batch_size=16, augment="none", pipeline="tensor", val_size=3)
module = ImageClassifier(create_model("lenet5", num_classes=10, in_channels=3),
                         optimizer=functools.partial(torch.optim.SGD, lr=0.01), num_classes=10)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[Seen()])
trainer.fit(module, datamodule=dm)
trainer.test(module, datamodule=dm, verbose=False)
with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
    json.dump({"train": Seen.train, "test": Seen.test, "batches": trainer.num_training_batches,
               "acc": trainer.callback_metrics["test/acc"].item()}, f)
'''


# slow: two DDP processes, about 14 s; default: the shards themselves
#   (test_distributed_ranks_get_disjoint_equal_shards_of_one_permutation)
@pytest.mark.slow
def test_under_ddp_each_rank_trains_and_tests_on_its_own_shard(tmp_path):
    """Two CPU processes (gloo), as Lightning launches them: disjoint equal training shards,
    the test split covered once."""
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    train = [{tuple(round(v, 4) for v in x) for x in rank["train"]} for rank in ranks]
    test = [{tuple(round(v, 4) for v in x) for x in rank["test"]} for rank in ranks]
    assert [len(r["train"]) for r in ranks] == [len(s) for s in train] == [100, 100]  # 200 training images, halved
    assert not train[0] & train[1] and ranks[0]["batches"] == ranks[1]["batches"] == 7
    assert not test[0] & test[1] and len(test[0] | test[1]) == 203  # every test image once
    assert ranks[0]["acc"] == ranks[1]["acc"]  # the metric is synced over both shards
