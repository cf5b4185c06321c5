"""AlexNet.

Paper: A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet Classification with
Deep Convolutional Neural Networks", NIPS 2012.

Key idea: a large convolutional network, trained on GPUs with ReLU units,
dropout and heavy data augmentation, wins ImageNet by a wide margin. Five
convolutions (the first 11x11 with stride 4) and three max-pools turn a
224x224 image into 256 maps of 6x6; two fully connected layers of 4096 units
with dropout 0.5 and a linear output classify it. The net was split over two
GPUs ("towers"): conv2, conv4 and conv5 see only the maps of their own tower,
conv3 and the fully connected layers see both. Overlapping max-pooling
(3x3 windows, stride 2) and local response normalization (LRN) after conv1 and
conv2 each lowered the error a little. On a 224x224 input (form="paper"):

    conv1 96 11x11/4, ReLU, LRN, max-pool 3/2  -> (N, 96, 27, 27)
    conv2 256 5x5, 2 groups, ReLU, LRN, pool   -> (N, 256, 13, 13)
    conv3 384 3x3, ReLU                        -> (N, 384, 13, 13)
    conv4 384 3x3, 2 groups, ReLU              -> (N, 384, 13, 13)
    conv5 256 3x3, 2 groups, ReLU, pool        -> (N, 256, 6, 6)
    fc6 4096, ReLU, dropout; fc7 4096, ReLU, dropout; fc8 num_classes

Forms (``form``):
- "paper" (default): the two towers as one network with grouped convolutions
  (groups=2 on conv2, conv4, conv5), 96-256-384-384-256 channels, LRN with the
  paper's constants (size 5, alpha 1e-4, beta 0.75, k 2) applied within each
  tower, dropout on the outputs of fc6 and fc7. 60,965,224 parameters at
  3x224x224 and 1000 classes.
- "torchvision": torchvision's single-tower variant (from "One weird trick",
  Krizhevsky 2014): 64-192-384-256-256 channels, no groups, no LRN, dropout on
  the inputs of fc6 and fc7. Same state_dict keys, order and shapes as
  ``torchvision.models.alexnet`` (its count: ``PARAMS``).

Departures from the paper, and why:
- conv1 pads by 2 so that a 224x224 input gives 55x55 maps (the paper says
  224 but its arithmetic needs 227); an adaptive average pool to 6x6 before
  fc6 (a no-op at 224x224, as in torchvision) lets other input sizes through.
- torch's ``LocalResponseNorm`` divides alpha by the window size and the
  paper's formula does not; we pass alpha * size so the result is the paper's
  b = a / (k + 1e-4 * sum of a^2 over 5 neighbouring maps)^0.75. (Caffe and
  many ports use alpha=1e-4 in torch's convention, i.e. 5x weaker.)
- Weights start from He et al. (2015) normal initialisation with zero biases,
  not the paper's N(0, 0.01) weights with biases of 1 in conv2, conv4, conv5,
  fc6, fc7 (which needs the paper's long schedule to get going), nor PyTorch's
  default (torchvision's), under which the signal shrinks so much through the
  LRN layers that the net at first gives nearly the same output for every
  image and barely learns in the first hundred steps.
- ``batchnorm=True`` (an ablation; the paper predates batch norm, so the
  default is False) puts a BatchNorm2d after every convolution, drops those
  convolutions' biases and removes the LRN layers, which batch norm
  supersedes. It applies to both forms.
- ``activation`` replaces every ReLU (all seven).

CIFAR stem (``stem="cifar"``, for 32x32 inputs): conv1 becomes 5x5 stride 1
(padding 2) and every max-pool keeps the 3x3/2 overlapping window with
padding 1, so maps go 32 -> 16 -> 8 -> 4 and conv5 gives (N, 256, 4, 4); the
adaptive pool goes to 4x4 and fc6 sees 4096 features. Widths, groups, LRN and
the 4096-4096 classifier are unchanged. Parameters at 3x32x32 and 10 classes:
35,910,026 (paper form), 36,054,858 (torchvision form).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import ActivationArg, check_choice, check_dropout, check_stem, check_switch, make_activation, variants

FORMS = ("paper", "torchvision")
HIDDEN = 4096  # units of fc6 and fc7

# One row per convolution:
# (out_channels, kernel, stride, padding, groups, LRN after, max-pool after)
CONVS = {
    "paper": (
        (96, 11, 4, 2, 1, True, True),  # conv1: 48 kernels per tower, each sees all input channels
        (256, 5, 1, 2, 2, True, True),  # conv2: a tower sees only its own 48 conv1 maps
        (384, 3, 1, 1, 1, False, False),  # conv3: the towers exchange maps here
        (384, 3, 1, 1, 2, False, False),  # conv4
        (256, 3, 1, 1, 2, False, True),  # conv5
    ),
    "torchvision": (
        (64, 11, 4, 2, 1, False, True),
        (192, 5, 1, 2, 1, False, True),
        (384, 3, 1, 1, 1, False, False),
        (256, 3, 1, 1, 1, False, False),
        (256, 3, 1, 1, 1, False, True),
    ),
}
TOWERS = {"paper": 2, "torchvision": 1}
# Section 3.3 of the paper: n = 5 neighbouring maps, alpha, beta, k.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0
# stem -> (conv1 kernel, stride, padding), max-pool padding, side of the map entering fc6
STEMS = {"imagenet": ((11, 4, 2), 0, 6), "cifar": ((5, 1, 2), 1, 4)}


class TowerLRN(nn.LocalResponseNorm):
    """The paper's local response normalization, applied within each tower:
    b_i = a_i / (k + alpha * sum_j a_j^2)^beta, j over the ``size`` maps
    around i that lie in i's tower (each GPU normalized its own maps)."""

    def __init__(self, towers: int = 1) -> None:
        super().__init__(LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)
        self.towers = towers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return super().forward(x.reshape(n * self.towers, c // self.towers, h, w)).reshape(n, c, h, w)


class AlexNet(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int, activation: ActivationArg, batchnorm: bool,
                 dropout: float, stem: str, form: str) -> None:
        super().__init__()
        dropout, batchnorm = check_dropout(dropout), check_switch("batchnorm", batchnorm)
        check_stem(stem)
        check_choice("form", form, FORMS)
        conv1, pool_padding, pooled = STEMS[stem]
        layers: list[nn.Module] = []
        channels = in_channels
        for i, (width, kernel, stride, padding, groups, lrn, pool) in enumerate(CONVS[form]):
            if i == 0:
                kernel, stride, padding = conv1
            layers.append(nn.Conv2d(channels, width, kernel, stride, padding, groups=groups, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(make_activation(activation))
            if lrn and not batchnorm:
                layers.append(TowerLRN(TOWERS[form]))
            if pool:
                layers.append(nn.MaxPool2d(3, 2, padding=pool_padding))  # overlapping pooling
            channels = width
        self.features = nn.Sequential(*layers)  # (N, 256, 6, 6) at 224x224; (N, 256, 4, 4) at 32x32
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        features = channels * pooled * pooled  # 9216 (imagenet) or 4096 (cifar)
        if form == "paper":  # dropout on the outputs of fc6 and fc7
            head = [
                nn.Linear(features, HIDDEN), make_activation(activation), nn.Dropout(dropout),
                nn.Linear(HIDDEN, HIDDEN), make_activation(activation), nn.Dropout(dropout),
            ]
        else:  # torchvision: dropout on the inputs of fc6 and fc7
            head = [
                nn.Dropout(dropout), nn.Linear(features, HIDDEN), make_activation(activation),
                nn.Dropout(dropout), nn.Linear(HIDDEN, HIDDEN), make_activation(activation),
            ]
        self.classifier = nn.Sequential(*head, nn.Linear(HIDDEN, num_classes))
        for module in self.modules():  # He et al. (2015) initialisation, zero biases
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))  # (N, num_classes)


def alexnet(*, num_classes: int = 1000, in_channels: int = 3, activation: ActivationArg = "relu",
            batchnorm: bool = False, dropout: float = 0.5, stem: str = "imagenet", form: str = "paper") -> AlexNet:
    """AlexNet (Krizhevsky et al. 2012), in the paper's form or torchvision's (``form``)."""
    return AlexNet(num_classes=num_classes, in_channels=in_channels, activation=activation, batchnorm=batchnorm,
                   dropout=dropout, stem=stem, form=form)


MODELS = variants(alexnet)

# name -> (parameters as published, where, the options counted): stated here only, tests/models/test_registry.py counts
PARAMS = {
    "alexnet": (61_100_840, "torchvision's docs (num_params)", {"form": "torchvision"}),
}
# the zoo table (summarize.py table=zoo)
PAPER = {"title": 'Krizhevsky et al., ImageNet Classification with Deep CNNs', "year": 2012}
