"""Cross-entropy and the losses for the ablations: the multi-class SVM losses, squared error on
one-hot targets (MSE and MAE), and one-vs-rest logistic loss.

Each takes raw scores (logits) of shape (N, C) and integer targets (N,)
and returns the mean over the batch. Each checks its options when built
(``loss.label_smoothing``, ``loss.margin``), so a bad value is one line
before anything is written, not an error (or silence) at the first step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import check_number


class CrossEntropy(nn.CrossEntropyLoss):
    """torch's softmax cross-entropy, its ``label_smoothing`` checked when built: torch checks it only in
    the forward pass, and only in part (2.x: 1.5 and inf fail at the first step; -0.1 and nan train
    silently). 1 would make every target uniform: nothing left to learn."""

    def __init__(self, label_smoothing: float = 0.0, **kwargs) -> None:
        label_smoothing = check_number("loss.label_smoothing", label_smoothing, "a number in [0, 1)",
                                       lambda v: 0.0 <= v < 1.0)
        super().__init__(label_smoothing=label_smoothing, **kwargs)


class MulticlassHinge(nn.Module):
    """The multi-class SVM loss of Weston & Watkins (1999), as taught in
    CS231n: for each example, sum over the wrong classes j of
    max(0, s_j - s_y + margin); ``squared=True`` squares each term (the
    squared hinge, smoother, as in L2-SVMs)."""

    def __init__(self, margin: float = 1.0, squared: bool = False) -> None:
        super().__init__()
        # margin <= 0: a wrong class scoring just below the right one costs nothing, and scores all equal
        # (the zero network) meet every margin
        self.margin = check_number("loss.margin", margin, "a number > 0", lambda m: m > 0)
        self.squared = squared

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        correct = scores.gather(1, target[:, None])  # (N, 1)
        margins = (scores - correct + self.margin).clamp_min(0)
        margins = margins.scatter(1, target[:, None], 0.0)  # the correct class contributes nothing
        if self.squared:
            margins = margins**2
        return margins.sum(1).mean()


class OneHotMSE(nn.Module):
    """Squared error between the scores (or their softmax, ``softmax=True``,
    the Brier score) and the one-hot target, averaged over batch and classes:
    classification as least-squares regression."""

    def __init__(self, softmax: bool = False) -> None:
        super().__init__()
        self.softmax = softmax

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        outputs = scores.softmax(1) if self.softmax else scores
        return F.mse_loss(outputs, F.one_hot(target, scores.shape[1]).to(outputs.dtype))


class OneHotMAE(OneHotMSE):
    """Absolute error (L1) between the scores (or their softmax) and the one-hot target,
    averaged over batch and classes. Its gradient has the same size, sign(s - t), however
    near or far a score is: robust to outliers, but no slowing down near the target
    (MSE's gradient, 2 (s - t), shrinks as it nears it)."""

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        outputs = scores.softmax(1) if self.softmax else scores
        return F.l1_loss(outputs, F.one_hot(target, scores.shape[1]).to(outputs.dtype))


class OneVsRestLogistic(nn.Module):
    """One binary logistic regression per class (a sigmoid on each score),
    each trained to say "this class or not": binary cross-entropy against
    the one-hot target, summed over classes, averaged over the batch."""

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(target, scores.shape[1]).to(scores.dtype)
        return F.binary_cross_entropy_with_logits(scores, one_hot, reduction="sum") / scores.shape[0]
