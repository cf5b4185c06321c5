"""Random images of a real data set's shape (CIFAR-10's by default), for
measuring speed: what a training step or a data path costs does not depend
on the pixels, and nothing needs downloading. There is nothing to learn.
"""

from __future__ import annotations

import torch

from .base import ClassificationDataModule, TensorImages


class RandomImagesDataModule(ClassificationDataModule):
    name = "random"

    def __init__(self, size: int = 50000, num_classes: int = 10, in_channels: int = 3, **kwargs) -> None:
        kwargs.setdefault("val_size", 0.01)
        super().__init__(**kwargs)
        self.size, self.num_classes, self.in_channels = size, num_classes, in_channels
        self.classes = [str(i) for i in range(num_classes)]

    def load(self):
        shape = (self.size, self.in_channels, self.image_size, self.image_size)
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(self.seed))
        pool = TensorImages(images, torch.arange(self.size) % self.num_classes)
        return pool, pool.targets, pool  # the test split is the pool: nothing is learned anyway
