"""Linear baselines: softmax regression, one-vs-rest logistic regression and
a linear SVM, on flattened pixels.

Papers: D. R. Cox, "The Regression Analysis of Binary Sequences", JRSS B,
1958 (logistic regression); C. Cortes, V. Vapnik, "Support-Vector Networks",
Machine Learning, 1995 (the SVM); J. Weston, C. Watkins, "Support Vector
Machines for Multi-Class Pattern Recognition", ESANN 1999 (the multi-class
hinge loss used here).

A kernel SVM, ``rff_svm``: A. Rahimi, B. Recht, "Random Features for
Large-Scale Kernel Machines", NIPS 2007. The RBF kernel
k(x, y) = exp(-gamma ||x - y||^2) equals E[z(x) z(y)] for the random map
z(x) = sqrt(2/D) cos(W x + b), W ~ N(0, 2 gamma I), b ~ U[0, 2 pi). A linear
SVM on D such features is therefore (approximately, as D grows) the kernel
SVM, without the n x n kernel matrix. W and b are drawn once (from the run's
seed) and fixed: buffers, not parameters; only the linear layer learns.

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

import math

import torch
from torch import nn

from .layers import ModelOptionError, check_dropout, check_number, check_switch, variants


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


class RandomFourierFeatures(nn.Module):
    """z(x) = sqrt(2/D) cos(W x + b): a fixed map whose inner products approximate
    the RBF kernel exp(-gamma ||x - y||^2) (Rahimi & Recht 2007, algorithm 1)."""

    def __init__(self, in_features: int, features: int, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma
        # the Fourier transform of the RBF kernel is a Gaussian of variance 2 gamma per coordinate
        self.register_buffer("weight", torch.randn(features, in_features) * math.sqrt(2.0 * gamma))
        self.register_buffer("bias", torch.rand(features) * 2.0 * math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return math.sqrt(2.0 / self.weight.shape[0]) * torch.cos(nn.functional.linear(x, self.weight, self.bias))


class KernelSVM(nn.Module):
    """Flatten, random Fourier features (fixed), then the linear classifier (trained)."""

    def __init__(self, num_classes: int, in_features: int, features: int, gamma: float, dropout: float) -> None:
        super().__init__()
        self.paper_loss = "hinge"
        self.features = nn.Sequential(nn.Flatten(), RandomFourierFeatures(in_features, features, gamma))  # (N, D)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _check_linear(name: str, activation, batchnorm, stem) -> None:
    if activation != "identity":
        raise ModelOptionError(f"{name} is linear: it has no activation to choose (activation must be 'identity', got "
                               f"{activation!r})")
    if check_switch("batchnorm", batchnorm):
        raise ModelOptionError(f"{name} is linear: it has no batchnorm (batchnorm must be false)")
    if stem != "cifar":
        raise ModelOptionError(f"{name} has no stem to choose: stem must be 'cifar', got {stem!r}")


# name -> its paper's loss
PAPER_LOSSES = {"logreg": "cross_entropy", "ovr_logreg": "one_vs_rest", "linear_svm": "hinge"}


def linear(name: str, *, num_classes: int = 10, in_channels: int = 3, activation: str = "identity",
           batchnorm: bool = False, dropout: float = 0.0, stem: str = "cifar",
           image_size: int = 32) -> LinearClassifier:
    """A linear classifier on flattened pixels, fitted with the loss of ``name``'s paper (PAPER_LOSSES)."""
    _check_linear(name, activation, batchnorm, stem)
    return LinearClassifier(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                            dropout=check_dropout(dropout), paper_loss=PAPER_LOSSES[name])


def rff_svm(*, num_classes: int = 10, in_channels: int = 3, activation: str = "identity", batchnorm: bool = False,
            dropout: float = 0.0, stem: str = "cifar", image_size: int = 32, features: int = 2048,
            gamma: float | None = None) -> KernelSVM:
    """An RBF-kernel SVM through D=``features`` random Fourier features (Rahimi & Recht 2007),
    fitted with loss=hinge. ``gamma`` null: 1 / (C*H*W), scikit-learn's "scale" for standardized inputs."""
    _check_linear("rff_svm", activation, batchnorm, stem)
    check_number("features", features, "a positive integer", lambda d: d >= 1, integer=True)
    in_features = in_channels * image_size * image_size
    gamma = 1.0 / in_features if gamma is None else gamma
    gamma = check_number("gamma", gamma, "a number > 0 or null", lambda g: g > 0)
    return KernelSVM(num_classes=num_classes, in_features=in_features, features=features, gamma=gamma,
                     dropout=check_dropout(dropout))


MODELS = variants(linear, PAPER_LOSSES) | variants(rff_svm)
# the zoo table (summarize.py table=zoo)
PAPER = {"title": 'Cox 1958 (logistic regression); Weston & Watkins 1999 (multi-class SVM)', "year": 1958}
