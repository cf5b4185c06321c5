"""scikit-learn's digits: real, offline, stratified splits."""

from __future__ import annotations

import pytest
import torch

from core.errors import UserError
from datamodules import DigitsDataModule


def test_splits_are_stratified_and_the_test_split_does_not_move_with_the_seed():
    a, b = DigitsDataModule(seed=1), DigitsDataModule(seed=2)
    a.setup()
    b.setup()
    assert (len(a.train_set), len(a.val_set), len(a.test_set)) == (1293, 144, 360)
    assert torch.equal(a.test_set.source.images, b.test_set.source.images)
    assert a.val_set.indices != b.val_set.indices
    from sklearn.datasets import load_digits

    share = torch.bincount(torch.as_tensor(load_digits().target)) * 360 / 1797
    test_counts = torch.bincount(a.test_set.source.targets, minlength=10)
    assert ((test_counts - share).abs() < 1).all()  # each class in proportion, to rounding


def test_images_are_brought_to_the_model_input_size():
    dm = DigitsDataModule(image_size=28)
    dm.setup()
    x, y = dm.test_set[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= y <= 9


@pytest.mark.parametrize("option, value, valid", [
    ("num_workers", -1, "an integer >= 0"), ("num_workers", 1.5, "an integer >= 0"),
    ("image_size", 0, "an integer in [1, 1024]"), ("image_size", 30000, "an integer in [1, 1024]"),
    ("image_size", True, "an integer in [1, 1024]"), ("crop_padding", -1, "an integer >= 0"),
    ("cutout_size", 0, "an integer >= 1"), ("cutout_size", float("inf"), "an integer >= 1"),
])
def test_the_base_class_refuses_a_bad_option_when_built_naming_its_key(option, value, valid):
    """Every data module's shared options are checked by ClassificationDataModule itself (issue 23: the
    rule lives in the constructor that takes the value), before anything is read or allocated."""
    with pytest.raises(UserError) as refused:
        DigitsDataModule(**{option: value})
    line = str(refused.value)
    assert line.startswith(f"data.{option} must be {valid}") and line.endswith(f", got {value!r}"), line
