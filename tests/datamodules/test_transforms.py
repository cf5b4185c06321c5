"""Normalization statistics and the cutout augmentation."""

from __future__ import annotations

import pytest
import torch

from datamodules.transforms import Cutout, build_transforms, channel_stats


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)


@pytest.mark.parametrize("mode", ["standardize", "minmax", "robust", "none"])
def test_each_normalization_gives_its_promised_statistics(images, mode):
    shift, scale = channel_stats(images, mode)
    tf = build_transforms("none", shift, scale, image_size=8)
    out = torch.stack([tf(img) for img in images])
    per_channel = out.transpose(0, 1).reshape(3, -1)
    if mode == "standardize":
        assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-4)
        assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(3), atol=1e-4)
    elif mode == "minmax":
        assert torch.allclose(per_channel.min(1).values, torch.zeros(3), atol=1e-6)
        assert torch.allclose(per_channel.max(1).values, torch.ones(3), atol=1e-6)
    elif mode == "robust":
        assert torch.allclose(per_channel.median(1).values, torch.zeros(3), atol=0.02)
        q = torch.quantile(per_channel, torch.tensor([0.25, 0.75]), dim=1)
        assert torch.allclose(q[1] - q[0], torch.ones(3), atol=0.03)
    else:
        assert torch.allclose(out, images.float(), atol=1e-3)  # raw pixel values 0..255


def test_cutout_zeroes_one_square_of_at_most_its_size():
    torch.manual_seed(0)
    image = torch.ones(3, 32, 32)
    out = Cutout(16)(image)
    zeroed = (out == 0).all(0)
    assert 0 < zeroed.sum() <= 256
    rows, cols = zeroed.any(1).nonzero(), zeroed.any(0).nonzero()
    assert zeroed.sum() == len(rows) * len(cols)  # a rectangle
    assert torch.equal(image, torch.ones(3, 32, 32))  # the input is untouched


@pytest.mark.parametrize("mode", ["standardize", "minmax", "robust", "none"])
def test_each_normalization_works_on_one_channel_images(mode):
    # grey images (digits, MNIST): robust's in-place cdf division once raised on a single channel
    torch.manual_seed(0)
    shift, scale = channel_stats(torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8), mode)
    assert len(shift) == len(scale) == 1 and scale[0] > 0
