"""CIFAR-10 (the zoo's default), CIFAR-100, MNIST and Fashion-MNIST through
torchvision's own download and readers.

Each data set is read once into a uint8 tensor (N, C, H, W), so training
pays no per-image decoding. torchvision's test split is the test split; the
validation split comes out of its training set (45k/5k for CIFAR).
"""

from __future__ import annotations

from urllib.error import URLError

import torch
import torch.nn.functional as F
from torchvision import datasets

from .base import ClassificationDataModule, DataError, TensorImages

# name -> (torchvision class, classes, channels, native size, where it lands under data_dir, source)
DATASETS = {
    "cifar10": (datasets.CIFAR10, 10, 3, 32, "cifar-10-batches-py",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": (datasets.CIFAR100, 100, 3, 32, "cifar-100-python",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "mnist": (datasets.MNIST, 10, 1, 28, "MNIST/raw", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion_mnist": (datasets.FashionMNIST, 10, 1, 28, "FashionMNIST/raw",
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
}


def to_uint8_images(data, size: int) -> torch.Tensor:
    """numpy (N, H, W, C) or tensor (N, H, W) -> uint8 (N, C, size, size)."""
    images = torch.as_tensor(data)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    if images.shape[-1] != size:
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


class TorchvisionDataModule(ClassificationDataModule):
    def __init__(self, dataset: str = "cifar10", download: bool = True, **kwargs) -> None:
        if dataset not in DATASETS:
            raise DataError(f"data.dataset={dataset!r} is not valid; valid: {', '.join(DATASETS)}")
        if not isinstance(download, bool):  # the string "false" would be taken for true
            raise DataError(f"data.download must be true or false, got {download!r}")
        super().__init__(**kwargs)
        self.name, self.download = dataset, download
        (self.dataset_class, self.num_classes, self.in_channels, self.native_size, self.folder,
         self.url) = DATASETS[dataset]

    def _open(self, train: bool, download: bool):
        return self.dataset_class(self.data_dir, train=train, download=download)

    def prepare_data(self) -> None:
        """Download on first use; fail with one line saying where and how."""
        where = f"{self.data_dir}/{self.folder}"
        try:
            for train in (True, False):
                self._open(train, self.download)
        except (URLError, OSError) as error:  # no network, or a partial download
            raise DataError(
                f"{self.name} is not in {where} and could not be downloaded ({error}); "
                f"download {self.url} into {self.data_dir} by hand, or set data.data_dir to a folder that holds it"
            ) from None
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            raise DataError(
                f"{self.name} is not in {where} (or is corrupted) and data.download=false; "
                f"set data.download=true or download {self.url} into {self.data_dir} by hand"
            ) from None

    def load(self):
        train, test = self._open(True, False), self._open(False, False)
        self.classes = list(train.classes)
        pool = TensorImages(to_uint8_images(train.data, self.image_size), torch.as_tensor(train.targets))
        test_set = TensorImages(to_uint8_images(test.data, self.image_size), torch.as_tensor(test.targets))
        return pool, pool.targets, test_set
