"""Any folder of images in torchvision's ImageFolder layout:

    <root>/train/<class>/<image>   (the validation split is drawn from here)
    <root>/test/<class>/<image>

so you can train the zoo on your own images. Images are decoded lazily and
brought to ``image_size`` (resize of the shorter side, centre crop). The
normalization statistics come from ``stats_samples`` training images drawn
with the seed (all of them if there are fewer), to keep start-up short on
large folders.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets
from torchvision.transforms import v2

from .base import ClassificationDataModule


class ImageFolderDataModule(ClassificationDataModule):
    name = "image_folder"
    in_channels = 3
    resize = True

    def __init__(self, root: str, stats_samples: int = 5000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        for split in ("train", "test"):
            if not (self.root / split).is_dir():
                raise FileNotFoundError(
                    f"data.root={root!r} has no {split}/ folder; expected {root}/train/<class>/* and {root}/test/<class>/*"
                )
        self.classes = sorted(p.name for p in (self.root / "train").iterdir() if p.is_dir())
        if len(self.classes) < 2:
            raise FileNotFoundError(f"data.root={root!r}: train/ holds {len(self.classes)} class folders, need at least 2")
        self.num_classes = len(self.classes)
        self.stats_samples = stats_samples

    def load(self):
        train = datasets.ImageFolder(str(self.root / "train"))
        test = datasets.ImageFolder(str(self.root / "test"))
        if test.classes != train.classes:
            raise ValueError(f"{self.root}: test/ classes {test.classes} differ from train/ classes {train.classes}")
        return train, torch.as_tensor(train.targets), test

    def train_images_for_stats(self, pool, indices):
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.tensor(indices)[torch.randperm(len(indices), generator=generator)[: self.stats_samples]]
        to_size = v2.Compose([v2.ToImage(), v2.Resize(self.image_size, antialias=True), v2.CenterCrop(self.image_size)])
        return torch.stack([to_size(pool[int(i)][0]) for i in chosen])
