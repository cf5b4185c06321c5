"""Linear baselines: softmax regression, one-vs-rest logistic regression and
a linear SVM, on flattened pixels.

Papers: D. R. Cox, "The Regression Analysis of Binary Sequences", JRSS B,
1958 (logistic regression); C. Cortes, V. Vapnik, "Support-Vector Networks",
Machine Learning, 1995 (the SVM); J. Weston, C. Watkins, "Support Vector
Machines for Multi-Class Pattern Recognition", ESANN 1999 (the multi-class
hinge loss used here).

Key idea: one score per class, s = W x + b, with x the image's pixels as a
vector. The three baselines share this model and differ only in the loss
that fits W and b, so they are one class here, registered three times:

    logreg      softmax + cross-entropy          (train with loss=cross_entropy)
    ovr_logreg  a sigmoid per class, one-vs-rest (train with loss=one_vs_rest)
    linear_svm  multi-class hinge                (train with loss=hinge or squared_hinge)

The loss lives in the ``loss`` config group, not in the model; each model
names its paper's loss in ``paper_loss`` and ``train.py`` warns when another
is chosen. Any CNN of the zoo should beat these; how far is the point.

Switches: ``dropout`` drops input pixels. ``activation`` and ``batchnorm``
make no sense for a linear model: only ``activation="identity"`` and
``batchnorm=False`` are accepted, anything else is a one-line error. Only
``stem="cifar"`` (no stem). Parameters: (C*H*W + 1) * classes, e.g. 30,730
for 3x32x32 and 10 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import check_dropout


class LinearClassifier(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, dropout: float, paper_loss: str) -> None:
        super().__init__()
        self.paper_loss = paper_loss
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, C*H*W)
            nn.Dropout(dropout),
            nn.Linear(in_channels * image_size * image_size, num_classes),  # (N, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


def _linear(name: str, paper_loss: str):
    def build(
        num_classes: int = 10,
        in_channels: int = 3,
        activation: str = "identity",
        batchnorm: bool = False,
        dropout: float = 0.0,
        stem: str = "cifar",
        image_size: int = 32,
    ) -> LinearClassifier:
        if activation != "identity":
            raise ValueError(f"{name} is linear: it has no activation to choose (activation must be 'identity', got {activation!r})")
        if batchnorm:
            raise ValueError(f"{name} is linear: it has no batchnorm (batchnorm must be false)")
        if stem != "cifar":
            raise ValueError(f"{name} has no stem to choose: stem must be 'cifar', got {stem!r}")
        return LinearClassifier(num_classes, in_channels, image_size, check_dropout(dropout), paper_loss)

    build.__name__ = name
    build.__doc__ = f"{name}: a linear classifier on flattened pixels, fitted with loss={paper_loss} (see module docstring)."
    return build


logreg = _linear("logreg", "cross_entropy")
ovr_logreg = _linear("ovr_logreg", "one_vs_rest")
linear_svm = _linear("linear_svm", "hinge")

MODELS = {"logreg": logreg, "ovr_logreg": ovr_logreg, "linear_svm": linear_svm}
