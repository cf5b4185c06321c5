"""LightningDataModules: one per data set, sharing splits and transforms."""

from .base import ClassificationDataModule
from .digits import DigitsDataModule
from .image_folder import ImageFolderDataModule
from .synthetic import RandomImagesDataModule
from .torchvision_sets import TorchvisionDataModule

__all__ = ["ClassificationDataModule", "DigitsDataModule", "ImageFolderDataModule", "RandomImagesDataModule", "TorchvisionDataModule"]
