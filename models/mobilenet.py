"""MobileNet-v1 and MobileNet-v2.

Papers:
- A. G. Howard, M. Zhu, B. Chen, D. Kalenichenko, W. Wang, T. Weyand,
  M. Andreetto, H. Adam, "MobileNets: Efficient Convolutional Neural Networks
  for Mobile Vision Applications", arXiv:1704.04861, 2017.
- M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2:
  Inverted Residuals and Linear Bottlenecks", CVPR 2018.

Key idea (v1): factor a standard KxK convolution into a *depthwise* 3x3
convolution (one filter per input channel, ``groups == channels``) and a
*pointwise* 1x1 convolution that mixes channels. For C_in -> C_out on a DxD map
this costs 9*C_in + C_in*C_out weights instead of 9*C_in*C_out, about 8-9x
fewer. A width multiplier alpha thins every layer (alpha * channels); the
resolution multiplier of the paper is just the input size, so it needs no
option here. Body (Table 1), on a 224x224 input:

    conv 3x3 s2, 32          -> (N, 32, 112, 112)
    dw/pw 64                 -> (N, 64, 112, 112)
    dw s2/pw 128, dw/pw 128  -> (N, 128, 56, 56)
    dw s2/pw 256, dw/pw 256  -> (N, 256, 28, 28)
    dw s2/pw 512, 5x dw/pw 512 -> (N, 512, 14, 14)
    dw s2/pw 1024, dw/pw 1024  -> (N, 1024, 7, 7)
    global average pool, FC  -> (N, num_classes)

Every convolution is conv-BN-ReLU. At alpha=1, 1000 classes this is 4,231,976
parameters (the paper's "4.2M"): 3,185,088 conv weights + 21,888 BN
weights and biases (gamma, beta of 27 BN layers; running statistics are
buffers, not parameters) + 1,025,000 for the FC (weights and bias); the convs
have no bias. alpha=0.75/0.5/0.25 give 2,585,560 / 1,331,592 / 470,072 (the
paper's 2.6M / 1.3M / 0.5M, Table 6).

Key idea (v2): the *inverted residual* block. A thin input (c channels) is
expanded by a factor t with a 1x1 conv, filtered by a 3x3 depthwise conv, and
projected back to a thin output by a 1x1 conv with NO non-linearity (the
*linear bottleneck*: a ReLU on a low-dimensional code destroys information).
The shortcut joins the thin ends when the block keeps stride 1 and width.
Table 2 is read as data: (t, c, n, s) = expansion, output channels, repeats,
stride of the first repeat. A stem conv 3x3 s2 to 32 channels opens, a 1x1
conv to 1280 channels closes, then global average pooling, dropout and a
linear classifier. With 224x224 input the map goes 112 -> 112 (16) -> 56 (24)
-> 28 (32) -> 14 (64, 96) -> 7 (160, 320, 1280).

v2 at width 1.0, 1000 classes has 3,504,872 parameters, exactly torchvision's
``mobilenet_v2``. Without the 34,112 BN parameters that is 3,470,760, the
"3.47M" published with the reference code, which the paper's Table 4 gives as
3.4M. Width 0.5 / 0.75 / 1.4 give 1,968,680 / 2,636,424 / 6,108,776, again
torchvision's counts. Its state_dict has torchvision's keys, order and shapes, so
torchvision weights load with ``load_state_dict``. There is no ``form`` option:
torchvision builds v2 as the paper and its reference code do (the paper's
final "conv2d 1x1" classifier on a 1x1 map is the linear layer here).

Width multiplier rounding:
- v1: ``max(8, int(alpha * channels))``, the TF-slim reference code's rule
  (floor, at least 8 channels). The paper just multiplies; for its alphas 1,
  0.75, 0.5 and 0.25 every product is a whole number, so the counts above are
  those of plain multiplication. The stem and all 13 blocks are thinned.
- v2: ``make_divisible(c * alpha, 8)`` on every stage and on the stem (round to
  a multiple of 8, never more than 10% down), and the last conv is
  1280 * max(1, alpha): it is not thinned below 1280, as in the paper and
  torchvision.

Departures from the papers, and why:
- v1: Table 1 lists the second-to-last depthwise conv as stride 2, but its
  input and output are both 7x7; it is stride 1 here (as in the reference code).
- v1: the paper has no dropout; ``dropout`` places one ``nn.Dropout`` before
  the FC (default 0.0). v2's dropout of 0.2 before the classifier is the
  reference code's and torchvision's.
- ``activation`` replaces every ReLU (v1) or ReLU6 (v2, the paper's default
  "relu6"). The v2 projection stays linear whatever ``activation`` is: that
  is the paper's point, not a switchable non-linearity.
- ``batchnorm=False`` removes every BatchNorm; the convolutions then get a bias.
- Initialisation (both): Kaiming-normal (fan_out) convolutions, BN (1, 0),
  linear N(0, 0.01) with zero bias, as torchvision does for v2.

CIFAR stem (``stem="cifar"``, for 32x32 inputs): the first conv has stride 1
instead of 2. In v2 the first stride-2 stage (t=6, c=24) also runs at stride 1,
as common CIFAR MobileNetV2s do, so a 32x32 image ends at 4x4 (32 -> 32 -> 16
-> 8 -> 4). In v1 the four remaining stride-2 blocks take 32x32 to 2x2.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    ActivationArg,
    ConvNormAct,
    check_dropout,
    check_number,
    check_stem,
    check_switch,
    make_divisible,
    variants,
)


def _check_width(width_mult: float) -> float:
    return check_number("width_mult", width_mult, "a positive number", lambda w: w > 0)


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------
# MobileNet-v1
# --------------------------------------------------------------------------

# Table 1 after the stem conv: (output channels of the pointwise conv, stride
# of the depthwise conv), one row per depthwise separable block.
V1_BLOCKS = [
    (64, 1),
    (128, 2), (128, 1),
    (256, 2), (256, 1),
    (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),  # the table's "s2" on the last one is a typo: 7x7 -> 7x7
]
V1_STEM_CHANNELS = 32


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv-BN-act (one filter per channel), then 1x1 pointwise conv-BN-act."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 activation: ActivationArg, batchnorm: bool) -> None:
        super().__init__(
            ConvNormAct(in_channels, in_channels, 3, stride, groups=in_channels,
                        activation=activation, batchnorm=batchnorm),  # depthwise
            ConvNormAct(in_channels, out_channels, 1, activation=activation, batchnorm=batchnorm),  # pointwise
        )


class MobileNetV1(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int, activation: ActivationArg,
                 batchnorm: bool, dropout: float, stem: str, width_mult: float) -> None:
        super().__init__()
        dropout, stem, width_mult = check_dropout(dropout), check_stem(stem), _check_width(width_mult)
        batchnorm = check_switch("batchnorm", batchnorm)

        def width(channels: int) -> int:
            return max(8, int(channels * width_mult))

        channels = width(V1_STEM_CHANNELS)
        first_stride = 2 if stem == "imagenet" else 1
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, channels, 3, first_stride, activation=activation, batchnorm=batchnorm)
        ]  # (N, 32, 112, 112) imagenet; (N, 32, 32, 32) cifar
        for out_channels, stride in V1_BLOCKS:
            layers.append(DepthwiseSeparable(channels, width(out_channels), stride, activation, batchnorm))
            channels = width(out_channels)
        self.features = nn.Sequential(*layers)  # (N, 1024, 7, 7) imagenet; (N, 1024, 2, 2) cifar
        self.pool = nn.AdaptiveAvgPool2d(1)  # (N, 1024, 1, 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# --------------------------------------------------------------------------
# MobileNet-v2
# --------------------------------------------------------------------------

# Table 2: (expansion t, output channels c, repeats n, stride s of the first repeat).
V2_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),  # runs at stride 1 with the CIFAR stem
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
V2_STEM_CHANNELS = 32
V2_LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """1x1 expand by t (skipped when t == 1) -> 3x3 depthwise -> 1x1 linear projection,
    with a shortcut when the block keeps stride 1 and width."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int,
                 activation: ActivationArg, batchnorm: bool) -> None:
        super().__init__()
        hidden = int(round(in_channels * expansion))
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvNormAct(in_channels, hidden, 1, activation=activation, batchnorm=batchnorm))
        layers.append(ConvNormAct(hidden, hidden, 3, stride, groups=hidden,
                                  activation=activation, batchnorm=batchnorm))  # depthwise
        # Linear bottleneck: conv (+ BN), no activation whatever `activation` is.
        # Unpacked into this Sequential so the keys match torchvision's.
        layers.extend(ConvNormAct(hidden, out_channels, 1, activation=None, batchnorm=batchnorm))
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int, activation: ActivationArg,
                 batchnorm: bool, dropout: float, stem: str, width_mult: float) -> None:
        super().__init__()
        dropout, stem, width_mult = check_dropout(dropout), check_stem(stem), _check_width(width_mult)
        batchnorm = check_switch("batchnorm", batchnorm)
        channels = make_divisible(V2_STEM_CHANNELS * width_mult, 8)
        first_stride = 2 if stem == "imagenet" else 1
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, channels, 3, first_stride, activation=activation, batchnorm=batchnorm)
        ]  # (N, 32, 112, 112) imagenet; (N, 32, 32, 32) cifar
        for index, (t, c, n, s) in enumerate(V2_STAGES):
            if stem == "cifar" and index == 1:
                s = 1
            out_channels = make_divisible(c * width_mult, 8)
            for repeat in range(n):
                layers.append(InvertedResidual(channels, out_channels, s if repeat == 0 else 1, t,
                                               activation, batchnorm))
                channels = out_channels
        # (N, 320, 7, 7) imagenet; (N, 320, 4, 4) cifar
        last_channels = make_divisible(V2_LAST_CHANNELS * max(1.0, width_mult), 8)
        layers.append(ConvNormAct(channels, last_channels, 1, activation=activation, batchnorm=batchnorm))
        self.features = nn.Sequential(*layers)  # (N, 1280, 7, 7) imagenet; (N, 1280, 4, 4) cifar
        self.pool = nn.AdaptiveAvgPool2d(1)  # (N, 1280, 1, 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# --------------------------------------------------------------------------
# Named builders
# --------------------------------------------------------------------------


def mobilenet_v1(*, num_classes: int = 1000, in_channels: int = 3, activation: ActivationArg = "relu",
                 batchnorm: bool = True, dropout: float = 0.0, stem: str = "imagenet",
                 width_mult: float = 1.0) -> MobileNetV1:
    """MobileNet-v1 (Howard et al. 2017): 4,231,976 parameters at alpha=1.0, 1000 classes."""
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, activation=activation, batchnorm=batchnorm,
                       dropout=dropout, stem=stem, width_mult=width_mult)


def mobilenet_v2(*, num_classes: int = 1000, in_channels: int = 3, activation: ActivationArg = "relu6",
                 batchnorm: bool = True, dropout: float = 0.2, stem: str = "imagenet",
                 width_mult: float = 1.0) -> MobileNetV2:
    """MobileNet-v2 (Sandler et al. 2018): 3,504,872 parameters at width 1.0, 1000 classes
    (torchvision's ``mobilenet_v2``)."""
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, activation=activation, batchnorm=batchnorm,
                       dropout=dropout, stem=stem, width_mult=width_mult)


MODELS = variants(mobilenet_v1) | variants(mobilenet_v2)

# name -> (parameters as published, where, the options counted): stated here only, tests/models/test_registry.py counts
PARAMS = {
    "mobilenet_v1": (4_231_976, "Howard et al. 2017, Table 8: 4.2M", {}),
    "mobilenet_v2": (3_504_872, "torchvision's docs (num_params)", {}),
}
# the zoo table (summarize.py table=zoo)
PAPER = {"title": 'Howard et al. 2017 (v1); Sandler et al. 2018 (v2)', "year": 2017}
