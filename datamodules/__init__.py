"""LightningDataModules: one per data set, sharing splits and transforms."""

from .base import ClassificationDataModule, DataError
from .digits import DigitsDataModule
from .image_folder import ImageFolderDataModule
from .synthetic import RandomImagesDataModule
from .torchvision_sets import TorchvisionDataModule

__all__ = ["ClassificationDataModule", "DataError", "DigitsDataModule", "ImageFolderDataModule",
           "RandomImagesDataModule", "TorchvisionDataModule"]
