"""EfficientNet-B0 ... B7, and compound scaling by any phi.

Paper: M. Tan, Q. V. Le, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks", ICML 2019.

Key idea: scale a network's depth d, width w and input resolution r
*together*, by one compound coefficient phi:

    d = alpha ** phi,  w = beta ** phi,  r = gamma ** phi,
    alpha = 1.2, beta = 1.1, gamma = 1.15  (alpha * beta**2 * gamma**2 ~ 2),

so each step of phi roughly doubles the FLOPs. The baseline, B0, was found by
neural architecture search: a stack of MBConv blocks (MobileNet-v2's
inverted residual with squeeze-and-excitation and the swish non-linearity):

    1x1 expand by t (skipped when t == 1) -> depthwise kxk (stride s)
    -> squeeze-and-excitation -> 1x1 linear projection
    (+ input, after stochastic depth, when the block keeps stride 1 and width)

SE pools the expanded map per channel, squeezes it to in_channels / 4 of the
*block input* (1x1 conv + activation), expands back (1x1 conv) and gates the
map with a sigmoid. The sigmoid gate is part of the paper's structure and stays
fixed; every other non-linearity follows ``activation``.

B0 (Table 1), on a 224x224 input; ``STAGES`` below holds it as data:

    conv 3x3 s2, 32                  -> (N, 32, 112, 112)
    MBConv1 k3,  16, x1              -> (N, 16, 112, 112)
    MBConv6 k3,  24, x2, s2          -> (N, 24, 56, 56)
    MBConv6 k5,  40, x2, s2          -> (N, 40, 28, 28)
    MBConv6 k3,  80, x3, s2          -> (N, 80, 14, 14)
    MBConv6 k5, 112, x3              -> (N, 112, 14, 14)
    MBConv6 k5, 192, x4, s2          -> (N, 192, 7, 7)
    MBConv6 k3, 320, x1              -> (N, 320, 7, 7)
    conv 1x1, 1280, pool, dropout, FC -> (N, num_classes)

Scaling. Channels become ``make_divisible(c * w, 8)`` (a multiple of 8, never
more than 10% down), repeats ``ceil(n * d)`` and the head conv
``make_divisible(1280 * w, 8)``: the reference code's ``round_filters`` and
``round_repeats``. (torchvision's head is 4x the last stage's width: the same
number for every published width, not for every phi.) The named B1-B7 use the
*published* (width, depth, resolution, dropout) table, not the formula: the
authors rounded and tuned it (phi=1 gives B2's width 1.1 and depth 1.2 but
resolution 258, not 260; phi=3 gives w=1.33, d=1.73, r=341 against B4's 1.4,
1.8, 380). ``efficientnet(phi=...)`` applies the formula and reports its
resolution as ``model.resolution``; phi=0 is B0.

Parameter counts (1000 classes, either stem): exactly torchvision's, in
``PARAMS`` at the end of this file. The paper's Table 2
gives 5.3M, 7.8M, 9.2M, 12M, 19M, 30M, 43M, 66M: B2's 9.2M is the one figure
these counts do not round to. The state_dict has torchvision's keys, order and
shapes, so its weights load (with ``form="torchvision"``).

Departures from the paper, and why:
- ``form``: the paper trains with batch norm momentum 0.99 (TensorFlow's
  convention, PyTorch's momentum=0.01) and its reference code uses eps=1e-3.
  torchvision keeps PyTorch's defaults (momentum 0.1, eps 1e-5) for B0-B4,
  which it trained itself, and the paper's values for B5-B7, whose weights
  were ported from TensorFlow. ``form="paper"`` (default) uses the paper's
  values everywhere, ``form="torchvision"`` torchvision's per variant
  (PyTorch's defaults for ``efficientnet(phi)``). Same layers and parameters;
  eps shifts outputs slightly, momentum only the running-statistics tracking.
- Padding is symmetric ((k - 1) // 2, as torchvision's); the TensorFlow code
  pads "SAME", asymmetric on stride-2 convs. The paper does not say.
- ``stochastic_depth`` (default 0.2, the reference code's drop-connect rate)
  drops a block's residual branch per sample with probability
  ``0.2 * i / num_blocks`` for block i (linear over the blocks, as torchvision's
  ``stochastic_depth_prob``); only in train mode, and only on blocks with a
  shortcut: the paper's "survival probability 0.8", decayed as the reference code does.
- ``dropout`` is the single dropout before the classifier, per the table.
- ``batchnorm=False`` removes every BatchNorm; the convolutions then get a bias.
- Initialisation as the reference code and torchvision: Kaiming-normal
  (fan_out) convs, BN (1, 0), linear uniform(+-1/sqrt(num_classes)), zero biases.

CIFAR stem (``stem="cifar"``, for 32x32 inputs): the stem conv has stride 1
instead of 2, and the first stride-2 stage (MBConv6 k3, 24) runs at stride 1,
as the zoo's CIFAR MobileNet-v2 (the same body) does. A 32x32 image then ends
at 4x4 (32 -> 32 (16, 24) -> 16 (40) -> 8 (80, 112) -> 4 (192, 320, 1280)),
total stride 8. With the stem change alone it would end at 2x2, where the 5x5
depthwise convs of the 192-channel stage would see mostly padding. B0 with the
CIFAR stem and 10 classes has 4,020,358 parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .layers import (
    ActivationArg,
    ConvNormAct,
    check_choice,
    check_dropout,
    check_number,
    check_stem,
    check_switch,
    make_activation,
    make_divisible,
    variants,
)

FORMS = ("paper", "torchvision")
PAPER_BN = (1e-3, 0.01)  # (eps, momentum): the reference code's, torchvision's B5-B7
PYTORCH_BN = (1e-5, 0.1)  # PyTorch's defaults, torchvision's B0-B4


@dataclass(frozen=True)
class Stage:
    """One row of the paper's Table 1: ``repeats`` MBConv blocks; the first has
    ``stride`` and maps ``in_channels`` to ``out_channels``, the rest keep both."""

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int


# EfficientNet-B0 (Table 1). The stem's width is STAGES[0].in_channels.
STAGES = (
    Stage(1, 3, 1, 32, 16, 1),
    Stage(6, 3, 2, 16, 24, 2),  # runs at stride 1 with the CIFAR stem
    Stage(6, 5, 2, 24, 40, 2),
    Stage(6, 3, 2, 40, 80, 3),
    Stage(6, 5, 1, 80, 112, 3),
    Stage(6, 5, 2, 112, 192, 4),
    Stage(6, 3, 1, 192, 320, 1),
)
HEAD_CHANNELS = 1280

# The published coefficients: name -> (width, depth, resolution, dropout).
SCALING = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}
PORTED = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")  # torchvision's weights ported from TF: paper's BN
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # depth, width, resolution bases of compound scaling


class StochasticDepth(nn.Module):
    """Zero the whole residual branch of a sample with probability ``p`` (train
    mode only), scaling the kept ones by 1 / (1 - p) (Huang et al. 2016)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
        return x * mask / keep


class SqueezeExcitation(nn.Module):
    """Global pool -> 1x1 conv down -> activation -> 1x1 conv up -> sigmoid gate
    (fixed: the gate is part of the structure) -> scale the input channels."""

    def __init__(self, channels: int, squeezed: int, activation: ActivationArg) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.activation = make_activation(activation)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))  # (N, C, 1, 1)
        return x * self.gate(scale)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel: int, stride: int,
                 drop_prob: float, activation: ActivationArg, batchnorm: bool) -> None:
        super().__init__()
        hidden = make_divisible(in_channels * expand_ratio, 8)
        layers: list[nn.Module] = []
        if hidden != in_channels:  # expand (absent in the t=1 blocks)
            layers.append(ConvNormAct(in_channels, hidden, 1, activation=activation, batchnorm=batchnorm))
        layers += [
            ConvNormAct(hidden, hidden, kernel, stride, groups=hidden,
                        activation=activation, batchnorm=batchnorm),  # depthwise
            SqueezeExcitation(hidden, max(1, in_channels // 4), activation),  # reduction of the block input
            ConvNormAct(hidden, out_channels, 1, activation=None, batchnorm=batchnorm),  # linear projection
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop_prob)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return self.stochastic_depth(out) + x if self.use_residual else out


class EfficientNet(nn.Module):
    """B0's ``stages`` scaled by ``width_mult`` (channels) and ``depth_mult`` (repeats).
    ``resolution`` is only recorded (``model.resolution``): the net takes any input size."""

    def __init__(self, width_mult: float, depth_mult: float, resolution: int, *, num_classes: int, in_channels: int,
                 activation: ActivationArg, batchnorm: bool, dropout: float, stem: str, stochastic_depth: float,
                 bn_eps_momentum: tuple[float, float], stages: tuple[Stage, ...] = STAGES) -> None:
        super().__init__()
        dropout, stem = check_dropout(dropout), check_stem(stem)
        batchnorm = check_switch("batchnorm", batchnorm)
        stochastic_depth = check_dropout(stochastic_depth, "stochastic_depth")
        self.width_mult, self.depth_mult, self.resolution = width_mult, depth_mult, resolution

        def width(channels: int) -> int:
            return make_divisible(channels * width_mult, 8)

        def depth(repeats: int) -> int:
            return int(math.ceil(repeats * depth_mult))

        channels = width(stages[0].in_channels)
        layers: list[nn.Module] = [ConvNormAct(in_channels, channels, 3, 2 if stem == "imagenet" else 1,
                                               activation=activation, batchnorm=batchnorm)]
        # (N, 32, 112, 112) imagenet; (N, 32, 32, 32) cifar  (B0 widths)
        first_stride2 = next(i for i, s in enumerate(stages) if s.stride == 2)
        num_blocks, block_id = sum(depth(s.repeats) for s in stages), 0
        for index, s in enumerate(stages):
            stride = 1 if stem == "cifar" and index == first_stride2 else s.stride
            blocks: list[nn.Module] = []
            for repeat in range(depth(s.repeats)):
                drop = stochastic_depth * block_id / num_blocks
                blocks.append(MBConv(channels, width(s.out_channels), expand_ratio=s.expand_ratio, kernel=s.kernel,
                                     stride=stride if repeat == 0 else 1, drop_prob=drop, activation=activation,
                                     batchnorm=batchnorm))
                channels, block_id = width(s.out_channels), block_id + 1
            layers.append(nn.Sequential(*blocks))
        # (N, 320, 7, 7) imagenet; (N, 320, 4, 4) cifar
        head = width(HEAD_CHANNELS)
        layers.append(ConvNormAct(channels, head, 1, activation=activation, batchnorm=batchnorm))
        self.features = nn.Sequential(*layers)  # (N, 1280, 7, 7) imagenet; (N, 1280, 4, 4) cifar
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # (N, 1280, 1, 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head, num_classes))

        eps, momentum = bn_eps_momentum
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = eps, momentum
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def efficientnet(*, phi: float = 0.0, num_classes: int = 1000, in_channels: int = 3, activation: ActivationArg = "silu",
                 batchnorm: bool = True, dropout: float = 0.2, stem: str = "imagenet", stochastic_depth: float = 0.2,
                 form: str = "paper") -> EfficientNet:
    """EfficientNet by the compound-scaling formula (Tan & Le 2019, eq. 3): depth 1.2**phi,
    width 1.1**phi, resolution round(224 * 1.15**phi) (``model.resolution``). phi=0 is B0."""
    check_number("phi", phi, "a real number")
    bn = PAPER_BN if check_choice("form", form, FORMS) == "paper" else PYTORCH_BN
    return EfficientNet(BETA ** phi, ALPHA ** phi, round(224 * GAMMA ** phi), num_classes=num_classes,
                        in_channels=in_channels, activation=activation, batchnorm=batchnorm, dropout=dropout, stem=stem,
                        stochastic_depth=stochastic_depth, bn_eps_momentum=bn)


def published(name: str, *, num_classes: int = 1000, in_channels: int = 3, activation: ActivationArg = "silu",
              batchnorm: bool = True, dropout: float | None = None, stem: str = "imagenet",
              stochastic_depth: float = 0.2, form: str = "paper") -> EfficientNet:
    """EfficientNet-B0..B7 by the published table (SCALING); ``dropout=None``: the row's."""
    width_mult, depth_mult, resolution, row_dropout = SCALING[name]
    torchvision_bn = PAPER_BN if name in PORTED else PYTORCH_BN
    bn = PAPER_BN if check_choice("form", form, FORMS) == "paper" else torchvision_bn
    return EfficientNet(width_mult, depth_mult, resolution, num_classes=num_classes, in_channels=in_channels,
                        activation=activation, batchnorm=batchnorm, dropout=row_dropout if dropout is None else dropout,
                        stem=stem, stochastic_depth=stochastic_depth, bn_eps_momentum=bn)


MODELS = variants(efficientnet) | variants(published, SCALING, lambda name: {"dropout": SCALING[name][3]})

# name -> (parameters as published, where, the options counted): stated here only, tests/models/test_registry.py counts
PARAMS = {name: (n, "torchvision's docs (num_params); Table 2 rounds them, its B2 9.2M is 9.1M",
                 {"form": "torchvision"})
          for name, n in zip(SCALING, (5_288_548, 7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784,
                                       43_040_704, 66_347_960))}
# the zoo table (summarize.py table=zoo)
PAPER = {"title": 'Tan & Le, EfficientNet: Rethinking Model Scaling', "year": 2019}
