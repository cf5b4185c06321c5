"""Transforms shared by every data module: augmentation, then normalization.

A training image goes uint8 -> (augment, on uint8) -> float in [0, 1] ->
per-channel affine normalization -> (cutout, on the normalized image).
Validation and test images skip the augmentation. The normalization's
statistics are computed from the training split (see ``channel_stats``),
so the same code serves CIFAR-10, digits and your own image folders; the
one fixed exception is ``imagenet``, ImageNet's mean and std, which weights
trained elsewhere with them expect (torchvision's, akamaster's CIFAR ResNets).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from core.errors import UserError, check_choice

AUGMENTATIONS = ("none", "crop", "standard", "autoaugment", "randaugment", "cutout")
NORMALIZATIONS = ("standardize", "minmax", "robust", "none", "imagenet")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # torchvision's ImageNet statistics


class Cutout(torch.nn.Module):
    """Cutout (DeVries & Taylor 2017): zero one ``size`` x ``size`` square at a
    uniformly random centre; the square may hang over the border, as in the
    paper. Applied after normalization, so zero is the data set's mean."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
        y0, y1 = max(0, cy - self.size // 2), min(h, cy + self.size - self.size // 2)
        x0, x1 = max(0, cx - self.size // 2), min(w, cx + self.size - self.size // 2)
        image = image.clone()
        image[..., y0:y1, x0:x1] = 0
        return image


class DataError(UserError):
    """Bad data or a bad data option (a missing folder, an unreadable image, a value out of range):
    the user's to fix, reported by the entry points as one line. Raised deliberately, never by a bug."""


def channel_stats(images: torch.Tensor, normalize: str) -> tuple[list[float], list[float]]:
    """Per-channel (shift, scale) for ``normalize``, from uint8 images (N, C, H, W).

    The returned pair feeds ``v2.Normalize(shift, scale)`` applied to images in
    [0, 1]: standardize -> mean and std; minmax -> min and (max - min);
    robust -> median and interquartile range; none -> 0 and 1/255 (raw pixel
    values 0..255); imagenet -> ImageNet's fixed mean and std (RGB only).
    """
    check_choice("data.normalize", normalize, NORMALIZATIONS)
    channels = images.shape[1]
    if normalize == "imagenet":
        if channels != 3:
            raise DataError(f"data.normalize=imagenet needs RGB images (3 channels), this data has {channels}; "
                            "valid here: standardize, minmax, robust, none")
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if normalize == "none":
        return [0.0] * channels, [1.0 / 255.0] * channels
    per_channel = images.transpose(0, 1).reshape(channels, -1)  # (C, N*H*W) uint8
    if normalize == "standardize":
        total, total_sq, count = (torch.zeros(channels, dtype=torch.float64),
                                  torch.zeros(channels, dtype=torch.float64), 0)
        for chunk in per_channel.split(1 << 22, dim=1):  # bounded memory on 50k images
            chunk = chunk.double() / 255.0
            total += chunk.sum(1)
            total_sq += (chunk * chunk).sum(1)
            count += chunk.shape[1]
        mean = total / count
        std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
        return mean.tolist(), std.tolist()
    if normalize == "minmax":
        low, high = per_channel.min(1).values.double() / 255.0, per_channel.max(1).values.double() / 255.0
        return low.tolist(), (high - low).clamp_min(1e-6).tolist()
    # robust: a histogram of the 256 levels gives exact quantiles of uint8 data
    cdf = torch.stack([torch.bincount(c.long(), minlength=256) for c in per_channel]).cumsum(1).double()
    cdf = cdf / cdf[:, -1:]  # not in place: the divisor is a view of cdf (an error since torch 2.x)
    q25, q50, q75 = ((cdf < q).sum(1).double() / 255.0 for q in (0.25, 0.5, 0.75))
    return q50.tolist(), (q75 - q25).clamp_min(1.0 / 255.0).tolist()


def build_transforms(
    augment: str,
    shift: list[float],
    scale: list[float],
    image_size: int,
    resize: bool = False,
    crop_padding: int = 4,
    cutout_size: int = 16,
) -> v2.Compose:
    """The pipeline for one split; ``augment="none"`` for validation and test.

    ``resize`` first resizes (shorter side) and centre-crops to ``image_size``,
    for image folders whose images are not already the model's size.
    """
    check_choice("data.augment", augment, AUGMENTATIONS)
    steps: list = [v2.ToImage()]
    if resize:
        steps += [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    if augment != "none":
        steps.append(v2.RandomCrop(image_size, padding=crop_padding))
        if augment != "crop":
            steps.append(v2.RandomHorizontalFlip())
    if augment == "autoaugment":
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10))
    elif augment == "randaugment":
        steps.append(v2.RandAugment())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(shift, scale)]
    if augment == "cutout":
        steps.append(Cutout(cutout_size))
    return v2.Compose(steps)
