"""What every classification data module shares: splits, transforms, loaders.

A subclass says how to read its data set (``load``: the full training pool
and the test split) and, if it must, how to fetch it (``prepare_data``).
This class then carves a stratified validation split out of the training
pool with a seeded generator, computes the normalization statistics on what
remains for training, and serves the three loaders. Validation and test
images never see augmentation.

Two data paths serve the same splits (``pipeline``):

- ``tensor`` (``tensor_pipeline.py``): every split held once as a uint8
  tensor on the training device, augmented and normalized a batch at a
  time there; no workers, no per-image work. ``num_workers`` is unused.
- ``torchvision``: a DataLoader over per-image ``transforms.py`` pipelines,
  with ``num_workers`` worker processes and pinned memory on a GPU.
- ``auto`` (the default): ``tensor`` wherever the augmentation has a batched
  form (everything but autoaugment and randaugment), on the GPU and on the
  CPU alike: on the CPU too it served CIFAR-shaped batches many times
  faster than the torchvision path with its workers (``benchmark.py``).

The tensor path finds its device in the attached Trainer
(``trainer.strategy.root_device``), or, without one, in ``self.device``
(set it to use the loaders in a plain loop). Under DDP each rank holds the
whole data set and reads a strided shard of each epoch's permutation.

``train_set``, ``val_set`` and ``test_set`` (per-image datasets) exist on
both paths, for inspection and for ``evaluate.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from core.errors import check_choice, check_number
from core.hardware import MAX_IMAGE_SIZE

from .tensor_pipeline import TENSOR_AUGMENTATIONS, DeviceLoader
from .transforms import AUGMENTATIONS, NORMALIZATIONS, DataError, build_transforms, channel_stats

PIPELINES = ("auto", "tensor", "torchvision")
log = logging.getLogger(__name__)


class TensorImages(Dataset):
    """Images held in memory as one uint8 tensor (N, C, H, W) plus labels."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        assert images.dtype == torch.uint8 and images.ndim == 4, "images must be uint8 (N, C, H, W)"
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.images[index], int(self.targets[index])


class Transformed(Dataset):
    """A view of ``source`` restricted to ``indices``, with a transform."""

    def __init__(self, source: Dataset, indices: Sequence[int], transform) -> None:
        self.source, self.indices, self.transform = source, list(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, target = self.source[self.indices[i]]
        return self.transform(image), target


def stratified_split(targets: torch.Tensor, holdout: int, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (keep, holdout) with ``holdout`` items in total and
    each class in proportion to its share, fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    keep, held = [], []
    classes, counts = targets.unique(return_counts=True)
    quotas = (counts.double() * holdout / len(targets)).floor().long()
    # give the items lost to rounding to the largest classes, so the total is exact
    for i in torch.argsort(counts, descending=True)[: holdout - int(quotas.sum())]:
        quotas[i] += 1
    for cls, quota in zip(classes, quotas):
        members = torch.nonzero(targets == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held += members[:quota].tolist()
        keep += members[quota:].tolist()
    return sorted(keep), sorted(held)


class ClassificationDataModule(L.LightningDataModule):
    """Base of every data module; subclasses set ``name`` and implement ``load``."""

    name = "base"

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        val_size: int | float = 5000,
        image_size: int = 32,
        augment: str = "standard",
        normalize: str = "standardize",
        crop_padding: int = 4,
        cutout_size: int = 16,
        seed: int = 42,
        pin_memory: bool = True,
        pipeline: str = "auto",
        stats: dict | None = None,
    ) -> None:
        super().__init__()
        check_choice("data.augment", augment, AUGMENTATIONS)
        check_choice("data.normalize", normalize, NORMALIZATIONS)
        check_choice("data.pipeline", pipeline, PIPELINES)
        if pipeline == "tensor" and augment not in TENSOR_AUGMENTATIONS:
            raise DataError(
                f"data.augment={augment!r} has no batched form for data.pipeline=tensor; valid there: "
                f"{', '.join(TENSOR_AUGMENTATIONS)} (or set data.pipeline=torchvision)"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"data.batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(val_size, bool) or (not (isinstance(val_size, int) and val_size >= 0)
                                          and not (isinstance(val_size, float) and 0 < val_size < 1)):
            raise DataError("data.val_size must be a count >= 0 (0: no validation split) or a fraction in (0, 1), "
                            f"got {val_size!r}")
        check_number("data.num_workers", num_workers, "an integer >= 0 (0: load in this process)", lambda v: v >= 0,
                     integer=True)
        check_number("data.image_size", image_size, f"an integer in [1, {MAX_IMAGE_SIZE}]",
                     lambda v: 1 <= v <= MAX_IMAGE_SIZE, integer=True)
        check_number("data.crop_padding", crop_padding, "an integer >= 0", lambda v: v >= 0, integer=True)
        check_number("data.cutout_size", cutout_size, "an integer >= 1", lambda v: v >= 1, integer=True)
        if "${" in str(data_dir):  # a config read without resolving it: the folder would be named after the text
            raise DataError(f"data.data_dir={data_dir!r} is an unresolved interpolation; give a folder")
        self.data_dir, self.batch_size, self.num_workers = str(data_dir), batch_size, num_workers
        self.val_size, self.image_size, self.seed = val_size, image_size, seed
        self.augment, self.normalize = augment, normalize
        self.crop_padding, self.cutout_size = crop_padding, cutout_size
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.pipeline = pipeline
        self.device = torch.device("cpu")  # where the tensor path holds the data when no Trainer is attached
        self.train_set = self.val_set = self.test_set = None
        self._on_device: dict[str, tuple] = {}  # source name -> (device, uint8 images, labels)
        # normalization: computed on the training split at setup, unless given (a weights card's {"shift", "scale"})
        self.fixed_stats = (list(stats["shift"]), list(stats["scale"])) if stats else None
        self.shift: list[float] | None = None
        self.scale: list[float] | None = None

    # what a subclass provides -------------------------------------------
    num_classes: int
    in_channels: int
    classes: list[str]
    resize = False  # resize + centre-crop every image to image_size first

    def load(self) -> tuple[Dataset, torch.Tensor, Dataset]:
        """Return (training pool, its labels as a tensor, test split); on the
        tensor path both must be ``TensorImages``."""
        raise NotImplementedError

    def load_test(self) -> Dataset:
        """The test split alone (``setup("test")`` with given statistics); a subclass whose training
        images cost time to read overrides it."""
        return self.load()[2]

    @property
    def tensor_path(self) -> bool:
        """Whether the loaders are ``DeviceLoader``s (see the module docstring for ``auto``)."""
        return self.pipeline == "tensor" or (self.pipeline == "auto" and self.augment in TENSOR_AUGMENTATIONS)

    def train_images_for_stats(self, pool: Dataset, indices: list[int]) -> torch.Tensor:
        """uint8 (N, C, H, W) training images to compute the normalization from."""
        return pool.images[indices]

    # the shared machinery -----------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """The three splits; ``stage="test"`` with the statistics given (a weights card's) reads the test split
        alone: an evaluation has no use for the training images (50,000 JPEGs decoded for nothing)."""
        if self.train_set is not None or (stage == "test" and self.test_set is not None):
            return
        if stage == "test" and self.fixed_stats:
            self.shift, self.scale = self.fixed_stats
            test = self.load_test()
            self.test_set = Transformed(test, range(len(test)), build_transforms("none", **self.transform_options()))
            return
        pool, targets, test = self.load()
        holdout = self.val_size if isinstance(self.val_size, int) else round(self.val_size * len(targets))
        if holdout >= len(targets):
            raise DataError(f"data.val_size={self.val_size} leaves no training images out of {len(targets)}")
        train_idx, val_idx = stratified_split(targets, holdout, self.seed)
        self.shift, self.scale = self.fixed_stats or channel_stats(self.train_images_for_stats(pool, train_idx),
                                                                   self.normalize)
        train_tf = build_transforms(self.augment, **self.transform_options())
        eval_tf = build_transforms("none", **self.transform_options())
        self.train_set = Transformed(pool, train_idx, train_tf)
        self.val_set = Transformed(pool, val_idx, eval_tf)
        self.test_set = Transformed(test, range(len(test)), eval_tf)

    def transform_options(self) -> dict:
        return dict(shift=self.shift, scale=self.scale, image_size=self.image_size, resize=self.resize,
                    crop_padding=self.crop_padding, cutout_size=self.cutout_size)

    def _device(self) -> torch.device:
        """The training device: the attached Trainer's, else ``self.device`` (set it for a plain loop)."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device(self.device)

    def _images_on_device(self, name: str, source: TensorImages, device: torch.device) -> tuple:
        """``source``'s images and labels on ``device``, copied there once (train and val share the pool)."""
        if name not in self._on_device or self._on_device[name][0] != device:
            if not isinstance(source, TensorImages):
                raise TypeError(f"{type(self).__name__}: the tensor path needs TensorImages, got "
                                f"{type(source).__name__}")
            self._on_device[name] = (device, source.images.to(device), source.targets.to(device))
            log.info(f"data.pipeline=tensor: {name} images {tuple(source.images.shape)} uint8 held on {device}")
        return self._on_device[name][1:]

    def _device_loader(self, split: Transformed, name: str, train: bool) -> DeviceLoader:
        device, trainer = self._device(), self.trainer
        images, targets = self._images_on_device(name, split.source, device)
        return DeviceLoader(
            images, targets, torch.as_tensor(split.indices), self.batch_size, self.shift, self.scale,
            augment=self.augment if train else "none", shuffle=train, crop_padding=self.crop_padding,
            cutout_size=self.cutout_size, seed=self.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader | DeviceLoader:
        if self.tensor_path:
            return self._device_loader(self.train_set, "pool", train=True)
        if self.pipeline == "auto":
            log.info(f"data.pipeline=auto: data.augment={self.augment} has no batched form, so the "
                     "torchvision path serves it")
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | DeviceLoader:
        if self.tensor_path:
            return self._device_loader(self.val_set, "pool", train=False)
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader | DeviceLoader:
        if self.tensor_path:
            return self._device_loader(self.test_set, "test", train=False)
        return self._loader(self.test_set, shuffle=False)
