"""Each loss equals its formula on a small example computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from core.errors import UserError
from training.losses import CrossEntropy, MulticlassHinge, OneHotMSE, OneVsRestLogistic

# two examples, three classes
SCORES = torch.tensor([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0]])
TARGET = torch.tensor([0, 2])


def test_hinge_is_the_weston_watkins_multiclass_svm_loss():
    # example 1 (true class 0, score 3.2): max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9 + 0
    # example 2 (true class 2, score 2.0): max(0, 1.3 - 2.0 + 1) + max(0, 4.9 - 2.0 + 1) = 0.3 + 3.9
    assert MulticlassHinge()(SCORES, TARGET).item() == pytest.approx((2.9 + 4.2) / 2)


def test_squared_hinge_squares_each_margin():
    assert MulticlassHinge(squared=True)(SCORES, TARGET).item() == pytest.approx((2.9**2 + 0.3**2 + 3.9**2) / 2)


def test_mse_on_one_hot_targets():
    # (3.2-1)^2 + 5.1^2 + 1.7^2 + 1.3^2 + 4.9^2 + (2-1)^2, over 6 entries
    expected = (2.2**2 + 5.1**2 + 1.7**2 + 1.3**2 + 4.9**2 + 1.0**2) / 6
    assert OneHotMSE()(SCORES, TARGET).item() == pytest.approx(expected)
    probs = SCORES.softmax(1)
    brier = ((probs - torch.eye(3)[TARGET]) ** 2).mean()
    assert OneHotMSE(softmax=True)(SCORES, TARGET).item() == pytest.approx(brier.item())


def test_one_vs_rest_is_a_logistic_loss_per_class():
    def bce(score, label):
        p = 1 / (1 + math.exp(-score))
        return -math.log(p) if label else -math.log(1 - p)

    expected = sum(bce(s, int(c == t)) for row, t in zip(SCORES.tolist(), TARGET.tolist())
                   for c, s in enumerate(row)) / 2
    assert OneVsRestLogistic()(SCORES, TARGET).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_is_torchs_with_label_smoothing_checked_when_built():
    """torch checks label_smoothing only in the forward pass, and lets -0.1 and nan through: ours refuses them
    when built, with 1 (every target uniform: nothing to learn), naming the key."""
    ours, torchs = CrossEntropy(label_smoothing=0.1), torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    assert ours(SCORES, TARGET).item() == pytest.approx(torchs(SCORES, TARGET).item())
    assert CrossEntropy(ignore_index=2)(SCORES, TARGET).item() == pytest.approx(
        torch.nn.CrossEntropyLoss(ignore_index=2)(SCORES, TARGET).item())  # torch's other arguments pass through
    for bad in (1.0, 1.5, -0.1, math.nan, math.inf, "abc"):
        with pytest.raises(UserError, match=r"^loss\.label_smoothing must be a number in \[0, 1\)"):
            CrossEntropy(label_smoothing=bad)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf])
def test_hinge_refuses_a_margin_that_is_not_positive_when_built(bad):
    with pytest.raises(UserError, match=r"^loss\.margin must be a number > 0"):
        MulticlassHinge(margin=bad)
