"""DenseNet (DenseNet-BC).

Paper: G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, "Densely
Connected Convolutional Networks", CVPR 2017.

Key idea: inside a dense block every layer receives the feature maps of all
layers before it, concatenated along channels, and adds only ``k`` new maps
(the growth rate). Features are reused instead of relearnt, so the layers can
be very narrow, and every layer has a short path to the loss. A DenseNet-BC
layer is pre-activation: BN-ReLU-1x1 conv to 4k channels (the bottleneck, "B"),
then BN-ReLU-3x3 conv to k channels. Between blocks a transition
(BN-ReLU-1x1 conv-2x2 average pool) halves the resolution and keeps
``floor(theta * m)`` of its ``m`` input channels (compression theta = 0.5, "C").
A block entered with ``c`` channels leaves with ``c + l * k`` after ``l`` layers.

Shapes, ``densenet121`` on a 224x224 image (k = 32, blocks 6, 12, 24, 16):

    stem 7x7/2 conv, BN, ReLU, 3x3/2 max-pool  -> (N, 64, 56, 56)
    dense block 1 (6 layers)                   -> (N, 64 + 6*32 = 256, 56, 56)
    transition 1                               -> (N, 128, 28, 28)
    dense block 2 (12)                         -> (N, 512, 28, 28) -> (N, 256, 14, 14)
    dense block 3 (24)                         -> (N, 1024, 14, 14) -> (N, 512, 7, 7)
    dense block 4 (16)                         -> (N, 1024, 7, 7)
    BN, ReLU, global average pool, linear      -> (N, num_classes)

``densenet_bc_100`` is the paper's CIFAR model (L = 100, k = 12): a 3x3 conv
to 2k = 24 channels, then three blocks of 16 bottleneck layers at 32, 16 and
8 pixels: 24 -> 216 -> 108 -> 300 -> 150 -> 342 channels. It has 769,162
parameters for 10 classes (the paper reports 0.8M).

Table 1 of the paper gives k = 32 and the block depths of densenet121, 169
and 201 (and 264, not registered); densenet161 (k = 48, a 96-channel stem) is
from the authors' released ImageNet models, as in torchvision.

Parameter counts: ``PARAMS`` at the end of this file (torchvision's, 1000
classes). The module tree uses torchvision's names
(``features.conv0``, ``features.denseblock1.denselayer1.norm1``, ...,
``features.norm5``, ``classifier``), so its state_dicts load directly.

Stems. ``stem="imagenet"``: the paper's 7x7 stride-2 conv with 2k channels,
BN, ReLU and a 3x3 stride-2 max-pool. ``stem="cifar"``: as in the paper's CIFAR
models, a single 3x3 stride-1 conv with 2k channels (64 for k = 32, 96 for
densenet161) and no pooling; the first dense layer's BN-ReLU follows it. The
ImageNet configurations then keep their four blocks at 32, 16, 8, 4 pixels.
``densenet_bc_100`` is a CIFAR model only: ``stem="imagenet"`` is refused.

Departures from the paper, and the switches:
- ``dropout``: the paper adds dropout (0.2) after every convolution except the
  first, and only for data sets without augmentation, so the default is 0.0.
  ``form="paper"`` puts ``nn.Dropout(dropout)`` after both convs of each dense
  layer and after each transition conv. There is no dropout before the
  classifier: the paper has none, and its own dropout places already exist.
- ``form="torchvision"``: torchvision's ``drop_rate`` drops only the k new
  features of each dense layer (after the 3x3 conv), never after the 1x1
  bottleneck or a transition. Both forms have the same parameters and are
  identical when ``dropout=0``.
- ``activation`` replaces every ReLU (stem, both in each dense layer, each
  transition, the final one before pooling); no gates to keep fixed.
- ``batchnorm=False`` removes every BatchNorm (``norm0``..``norm5``); each
  conv then gets a bias, which with BN on would be redundant (and torchvision
  has none), so the pre-activation "BN-ReLU-conv" becomes "ReLU-conv".
- ``growth_rate`` (k; None: the table's) sets the stem to 2k channels and
  the bottleneck to 4k, as in the paper. ``compression`` is theta in (0, 1];
  theta = 1 gives DenseNet-B (no compression).
- Initialisation as torchvision: Kaiming-normal convs, BN weight 1 bias 0,
  zero biases. Torchvision's ``memory_efficient`` checkpointing is left out.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from .layers import (
    ActivationArg,
    ModelOptionError,
    check_choice,
    check_dropout,
    check_number,
    check_stem,
    check_switch,
    make_activation,
    norm2d,
    variants,
)

FORMS = ("paper", "torchvision")


class DenseLayer(nn.Sequential):
    """BN-act-1x1 conv (4k) - BN-act-3x3 conv (k); returns its input with the
    k new maps concatenated: (N, c, H, W) -> (N, c + k, H, W)."""

    def __init__(self, in_channels: int, growth_rate: int, activation: ActivationArg,
                 batchnorm: bool, dropout: float, form: str) -> None:
        super().__init__()
        width = 4 * growth_rate  # the bottleneck
        self.add_module("norm1", norm2d(in_channels, batchnorm))
        self.add_module("act1", make_activation(activation))
        self.add_module("conv1", nn.Conv2d(in_channels, width, 1, bias=not batchnorm))
        if form == "paper":
            self.add_module("drop1", nn.Dropout(dropout))
        self.add_module("norm2", norm2d(width, batchnorm))
        self.add_module("act2", make_activation(activation))
        self.add_module("conv2", nn.Conv2d(width, growth_rate, 3, padding=1, bias=not batchnorm))
        self.add_module("drop2", nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], dim=1)


def dense_block(num_layers: int, in_channels: int, growth_rate: int, **layer_options) -> nn.Sequential:
    """``num_layers`` dense layers: (N, c, H, W) -> (N, c + num_layers * k, H, W)."""
    return nn.Sequential(OrderedDict(
        (f"denselayer{i + 1}", DenseLayer(in_channels + i * growth_rate, growth_rate, **layer_options))
        for i in range(num_layers)
    ))


def transition(in_channels: int, out_channels: int, activation: ActivationArg,
               batchnorm: bool, dropout: float, form: str) -> nn.Sequential:
    """BN-act-1x1 conv-2x2 average pool: (N, m, H, W) -> (N, floor(theta m), H/2, W/2)."""
    layers = OrderedDict(
        norm=norm2d(in_channels, batchnorm),
        act=make_activation(activation),
        conv=nn.Conv2d(in_channels, out_channels, 1, bias=not batchnorm),
    )
    if form == "paper":
        layers["drop"] = nn.Dropout(dropout)
    layers["pool"] = nn.AvgPool2d(2, stride=2)
    return nn.Sequential(layers)


def check_compression(compression: float) -> float:
    return check_number("compression (theta)", compression, "a number in (0, 1]", lambda c: 0.0 < c <= 1.0)


class DenseNet(nn.Module):
    """DenseNet-BC: a stem, dense blocks joined by transitions, BN-act,
    global average pooling and a linear classifier."""

    def __init__(self, block_config: tuple[int, ...], *, growth_rate: int, num_classes: int, in_channels: int,
                 activation: ActivationArg, batchnorm: bool, dropout: float, stem: str, compression: float,
                 form: str) -> None:
        super().__init__()
        dropout, batchnorm = check_dropout(dropout), check_switch("batchnorm", batchnorm)
        check_stem(stem)
        compression = check_compression(compression)
        check_choice("form", form, FORMS)
        check_number("growth_rate", growth_rate, "a positive integer", lambda k: k >= 1, integer=True)
        options = dict(activation=activation, batchnorm=batchnorm, dropout=dropout, form=form)

        channels = 2 * growth_rate  # the stem's width, 2k
        self.features = nn.Sequential()
        if stem == "imagenet":  # (N, 3, 224, 224) -> (N, 2k, 56, 56)
            self.features.add_module("conv0", nn.Conv2d(in_channels, channels, 7, stride=2, padding=3,
                                                        bias=not batchnorm))
            self.features.add_module("norm0", norm2d(channels, batchnorm))
            self.features.add_module("act0", make_activation(activation))
            self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        else:  # (N, 3, 32, 32) -> (N, 2k, 32, 32): one conv, the first dense layer's BN-act follows
            self.features.add_module("conv0", nn.Conv2d(in_channels, channels, 3, padding=1,
                                                        bias=not batchnorm))

        for i, num_layers in enumerate(block_config, start=1):
            block = dense_block(num_layers, channels, growth_rate, **options)
            self.features.add_module(f"denseblock{i}", block)
            channels += num_layers * growth_rate  # c + l * k
            if i < len(block_config):
                # floor(theta m), at least 1; the 1e-9 absorbs float error (0.29 * 100 = 28.999...)
                reduced = max(1, math.floor(compression * channels + 1e-9))
                self.features.add_module(f"transition{i}", transition(channels, reduced, **options))
                channels = reduced
        self.features.add_module("norm5", norm2d(channels, batchnorm))
        self.features.add_module("act5", make_activation(activation))
        self.pool = nn.AdaptiveAvgPool2d(1)  # (N, C, 1, 1)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C, H', W')
        return self.classifier(torch.flatten(self.pool(x), 1))  # (N, num_classes)


# name -> (growth rate k, layers per dense block): Table 1 of the paper for ImageNet (densenet161: the
# authors' released model); DenseNet-BC L = 100, k = 12 for CIFAR ((100 - 4) / 6 = 16 per block).
DENSENETS: dict[str, tuple[int, tuple[int, ...]]] = {
    "densenet121": (32, (6, 12, 24, 16)),
    "densenet161": (48, (6, 12, 36, 24)),
    "densenet169": (32, (6, 12, 32, 32)),
    "densenet201": (32, (6, 12, 48, 32)),
}
CIFAR_DENSENETS: dict[str, tuple[int, tuple[int, ...]]] = {"densenet_bc_100": (12, (16, 16, 16))}


def densenet(name: str, *, num_classes: int = 1000, in_channels: int = 3, activation: ActivationArg = "relu",
             batchnorm: bool = True, dropout: float = 0.0, stem: str = "imagenet", growth_rate: int | None = None,
             compression: float = 0.5, form: str = "paper") -> DenseNet:
    """A DenseNet-BC of the table (Huang et al. 2017); ``growth_rate=None``: the row's k."""
    paper_growth_rate, block_config = (DENSENETS | CIFAR_DENSENETS)[name]  # cifar_densenet's rows too
    return DenseNet(block_config, growth_rate=paper_growth_rate if growth_rate is None else growth_rate,
                    num_classes=num_classes, in_channels=in_channels, activation=activation, batchnorm=batchnorm,
                    dropout=dropout, stem=stem, compression=compression, form=form)


def cifar_densenet(name: str, *, num_classes: int = 10, in_channels: int = 3, activation: ActivationArg = "relu",
                   batchnorm: bool = True, dropout: float = 0.0, stem: str = "cifar", growth_rate: int | None = None,
                   compression: float = 0.5, form: str = "paper") -> DenseNet:
    """A CIFAR DenseNet-BC of the table: the CIFAR stem only; ``growth_rate=None``: the row's k."""
    if stem != "cifar":
        raise ModelOptionError(f"{name} is a CIFAR model: stem must be 'cifar', got {stem!r}")
    return densenet(name, num_classes=num_classes, in_channels=in_channels, activation=activation, batchnorm=batchnorm,
                    dropout=dropout, stem=stem, growth_rate=growth_rate, compression=compression, form=form)


MODELS = (variants(densenet, DENSENETS, lambda name: {"growth_rate": DENSENETS[name][0]})
          | variants(cifar_densenet, CIFAR_DENSENETS, lambda name: {"growth_rate": CIFAR_DENSENETS[name][0]}))

# name -> (parameters as published, where, the options counted): stated here only, tests/models/test_registry.py counts
PARAMS = {
    "densenet121": (7_978_856, "torchvision's docs (num_params)", {"form": "torchvision"}),
    "densenet161": (28_681_000, "torchvision's docs (num_params)", {"form": "torchvision"}),
    "densenet169": (14_149_480, "torchvision's docs (num_params)", {"form": "torchvision"}),
    "densenet201": (20_013_928, "torchvision's docs (num_params)", {"form": "torchvision"}),
    "densenet_bc_100": (769_162, "Huang et al. 2017, Table 2: 0.8M", {}),
}
# the zoo table (summarize.py table=zoo)
PAPER = {"title": 'Huang et al., Densely Connected Convolutional Networks', "year": 2017}
