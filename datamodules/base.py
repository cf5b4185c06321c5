"""What every classification data module shares: splits, transforms, loaders.

A subclass says how to read its data set (``load``: the full training pool
and the test split) and, if it must, how to fetch it (``prepare_data``).
This class then carves a stratified validation split out of the training
pool with a seeded generator, computes the normalization statistics on what
remains for training, and serves the three loaders. Validation and test
images never see augmentation.
"""

from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .transforms import AUGMENTATIONS, NORMALIZATIONS, build_transforms, channel_stats, check_choice


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
    ) -> None:
        super().__init__()
        check_choice("data.augment", augment, AUGMENTATIONS)
        check_choice("data.normalize", normalize, NORMALIZATIONS)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"data.batch_size must be a positive integer, got {batch_size!r}")
        if not (isinstance(val_size, int) and val_size >= 1) and not (isinstance(val_size, float) and 0 < val_size < 1):
            raise ValueError(f"data.val_size must be a count >= 1 or a fraction in (0, 1), got {val_size!r}")
        self.data_dir, self.batch_size, self.num_workers = str(data_dir), batch_size, num_workers
        self.val_size, self.image_size, self.seed = val_size, image_size, seed
        self.augment, self.normalize = augment, normalize
        self.crop_padding, self.cutout_size = crop_padding, cutout_size
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.train_set = self.val_set = self.test_set = None
        self.shift: list[float] | None = None
        self.scale: list[float] | None = None

    # what a subclass provides -------------------------------------------
    num_classes: int
    in_channels: int
    classes: list[str]
    resize = False  # resize + centre-crop every image to image_size first

    def load(self) -> tuple[Dataset, torch.Tensor, Dataset]:
        """Return (training pool, its labels as a tensor, test split)."""
        raise NotImplementedError

    def train_images_for_stats(self, pool: Dataset, indices: list[int]) -> torch.Tensor:
        """uint8 (N, C, H, W) training images to compute the normalization from."""
        return pool.images[indices]

    # the shared machinery -----------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        pool, targets, test = self.load()
        holdout = self.val_size if isinstance(self.val_size, int) else round(self.val_size * len(targets))
        if holdout >= len(targets):
            raise ValueError(f"data.val_size={self.val_size} leaves no training images out of {len(targets)}")
        train_idx, val_idx = stratified_split(targets, holdout, self.seed)
        self.shift, self.scale = channel_stats(self.train_images_for_stats(pool, train_idx), self.normalize)
        common = dict(shift=self.shift, scale=self.scale, image_size=self.image_size, resize=self.resize,
                      crop_padding=self.crop_padding, cutout_size=self.cutout_size)
        train_tf = build_transforms(self.augment, **common)
        eval_tf = build_transforms("none", **common)
        self.train_set = Transformed(pool, train_idx, train_tf)
        self.val_set = Transformed(pool, val_idx, eval_tf)
        self.test_set = Transformed(test, range(len(test)), eval_tf)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
