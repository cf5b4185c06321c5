"""scikit-learn's handwritten digits: 1,797 real 8x8 grey images of 0-9
(UCI ML hand-written digits, Alpaydin & Kaynak 1998) that ship with
scikit-learn, so a full train-evaluate cycle runs anywhere, offline, in a
minute. Images are brought to ``image_size`` (32 by default, LeNet-5's input)
by bilinear interpolation; a fixed stratified 20% is the test split
(independent of ``seed``, so every run is scored on the same images).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import ClassificationDataModule, TensorImages, stratified_split


class DigitsDataModule(ClassificationDataModule):
    name = "digits"
    num_classes = 10
    in_channels = 1
    classes = [str(d) for d in range(10)]

    def __init__(self, test_size: int = 360, **kwargs) -> None:
        kwargs.setdefault("val_size", 144)
        kwargs.setdefault("augment", "none")  # flipping a digit changes its meaning
        super().__init__(**kwargs)
        self.test_size = test_size

    def load(self):
        from sklearn.datasets import load_digits  # scikit-learn is only needed here

        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
        images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        images = (images * 255).round().clamp(0, 255).to(torch.uint8)
        targets = torch.as_tensor(digits.target)
        pool_idx, test_idx = stratified_split(targets, self.test_size, seed=0)
        pool = TensorImages(images[pool_idx], targets[pool_idx])
        return pool, pool.targets, TensorImages(images[test_idx], targets[test_idx])
