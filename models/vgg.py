"""VGG.

Paper: K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", arXiv 1409.1556 (2014), ICLR 2015.

Key idea: depth with the smallest kernels. Every convolution is 3x3 with
stride 1 and padding 1; a stack of two has the receptive field of one 5x5,
three of one 7x7, with fewer parameters and more non-linearities between.
Five stages of such convolutions, each closed by a 2x2 max-pool, take a
224x224 image to 512 maps of 7x7; the widths double per stage from 64 up to
512. Three fully connected layers (4096, 4096, num_classes; dropout 0.5 after
the first two) classify. The configurations of Table 1 differ only in how
many convolutions each stage holds:

    config  name   convs per stage   weight layers
    A       vgg11  1, 1, 2, 2, 2     8 conv + 3 FC = 11
    B       vgg13  2, 2, 2, 2, 2     10 + 3 = 13
    D       vgg16  2, 2, 3, 3, 3     13 + 3 = 16
    E       vgg19  2, 2, 4, 4, 4     16 + 3 = 19

On a 224x224 input: (N, 64, 224, 224) -> pool (N, 64, 112, 112) -> ... ->
stage 5 (N, 512, 14, 14) -> pool (N, 512, 7, 7) -> 25,088 features -> FC.
Config C (1x1 convolutions in the last three stages) and A-LRN are left out,
as in torchvision.

torchvision: ``vgg11`` .. ``vgg19`` are the paper's configurations, so there
is no ``form`` option. Our state_dict keys, order and shapes equal
torchvision's, and so do the parameter counts (``PARAMS`` at the end of this
file). ``*_bn`` (batch norm postdates the paper; torchvision's addition) put a
BatchNorm2d between each convolution and its activation; the convolutions keep
their bias, as in torchvision. ``vgg16`` with ``batchnorm=True`` builds the same
network as ``vgg16_bn``: the names differ only in the default of ``batchnorm``.

Departures from the paper, and why:
- An adaptive average pool to 7x7 before the classifier (torchvision's; a
  no-op at 224x224) accepts other input sizes. The paper instead turns the
  FC layers into convolutions at test time ("dense evaluation").
- Initialisation: the paper trained A from N(0, 0.01) and started the deeper
  nets from A's weights; here every net starts from scratch with He et al.'s
  (2015) normal init (fan-out, ReLU gain) for convolutions, N(0, 0.01) for
  the FC layers and zero biases, as torchvision does (He et al. designed
  their init so that deep plain ReLU nets like these train from scratch).
- ``downsample="stride"`` (an ablation switch; default ``"pool"``, the
  paper's): each stage's last convolution strides 2 and the max-pool goes
  (Springenberg et al. 2015, "Striving for Simplicity: The All Convolutional
  Net", their Strided-CNN): the same parameters, the same map sizes, about a
  quarter of that convolution's MACs, and the downsampling is learned.
- ``activation`` replaces every ReLU (convolutions and FC layers);
  ``dropout`` sets both dropout layers of the classifier.

CIFAR stem (``stem="cifar"``, for 32x32 inputs): the same convolution stack;
its five max-pools take 32x32 to 1x1, so the features are 512 numbers (an
adaptive pool to 1x1 lets larger inputs through). The classifier keeps the
paper's shape, two hidden FC layers with dropout, but 512 units wide instead
of 4096: 4096 hidden units on 512 features would add ~19M parameters for no
gain on 10-100 classes, while keeping two hidden layers keeps the ``dropout``
switch where the paper has it (common CIFAR VGGs use a single linear layer
and lose that). Parameters at 3x32x32 and 10 classes: vgg11 9,750,922,
vgg13 9,935,434, vgg16 15,245,130, vgg19 20,554,826; vgg11_bn 9,756,426,
vgg13_bn 9,941,322, vgg16_bn 15,253,578, vgg19_bn 20,565,834.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import ActivationArg, check_choice, check_dropout, check_stem, check_switch, make_activation, variants

WIDTHS = (64, 128, 256, 512, 512)  # channels of the five stages
# Table 1: convolutions per stage of configurations A, B, D, E.
CONFIGS = {
    "A": (1, 1, 2, 2, 2),
    "B": (2, 2, 2, 2, 2),
    "D": (2, 2, 3, 3, 3),
    "E": (2, 2, 4, 4, 4),
}
# name -> (column of Table 1, batch norm): the paper's four, and torchvision's four with batch norm
VGGS = {"vgg11": ("A", False), "vgg13": ("B", False), "vgg16": ("D", False), "vgg19": ("E", False),
        "vgg11_bn": ("A", True), "vgg13_bn": ("B", True), "vgg16_bn": ("D", True), "vgg19_bn": ("E", True)}
# stem -> (side of the map entering the classifier, hidden FC units)
HEADS = {"imagenet": (7, 4096), "cifar": (1, 512)}
# pool: the paper's 2x2 max-pool after each stage; stride: the stage's last 3x3 convolution
# strides 2 instead ("Strided-CNN", Springenberg et al. 2015, Striving for Simplicity).
DOWNSAMPLES = ("pool", "stride")


class VGG(nn.Module):
    def __init__(self, depths: tuple[int, ...], *, num_classes: int, in_channels: int, activation: ActivationArg,
                 batchnorm: bool, dropout: float, stem: str, downsample: str) -> None:
        super().__init__()
        dropout, batchnorm = check_dropout(dropout), check_switch("batchnorm", batchnorm)
        check_stem(stem)
        check_choice("downsample", downsample, DOWNSAMPLES)
        layers: list[nn.Module] = []
        channels = in_channels
        for width, depth in zip(WIDTHS, depths):
            for i in range(depth):
                # downsample="stride": the stage's last convolution strides instead of the pool
                stride = 2 if downsample == "stride" and i == depth - 1 else 1
                # the bias stays even before batch norm: torchvision's layout
                layers.append(nn.Conv2d(channels, width, kernel_size=3, stride=stride, padding=1))
                if batchnorm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(make_activation(activation))
                channels = width
            # halves the side; Identity when the convolution strode (keeps the layer indices)
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2) if downsample == "pool" else nn.Identity())
        self.features = nn.Sequential(*layers)  # (N, 512, 7, 7) at 224x224; (N, 512, 1, 1) at 32x32
        pooled, hidden = HEADS[stem]
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Linear(channels * pooled * pooled, hidden),  # 25,088 -> 4096 (imagenet), 512 -> 512 (cifar)
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))  # (N, num_classes)


def vgg(name: str, *, num_classes: int = 1000, in_channels: int = 3, activation: ActivationArg = "relu",
        batchnorm: bool | None = None, dropout: float = 0.5, stem: str = "imagenet", downsample: str = "pool") -> VGG:
    """A VGG of Table 1 (Simonyan & Zisserman 2014); ``batchnorm=None``: the row's (on in the ``_bn`` rows)."""
    column, row_batchnorm = VGGS[name]
    return VGG(CONFIGS[column], num_classes=num_classes, in_channels=in_channels, activation=activation,
               batchnorm=row_batchnorm if batchnorm is None else batchnorm, dropout=dropout, stem=stem,
               downsample=downsample)


MODELS = variants(vgg, VGGS, lambda name: {"batchnorm": VGGS[name][1]})

# name -> (parameters as published, where, the options counted): stated here only, tests/models/test_registry.py counts
PARAMS = {
    "vgg11": (132_863_336, "torchvision's docs (num_params)", {}),
    "vgg11_bn": (132_868_840, "torchvision's docs (num_params)", {}),
    "vgg13": (133_047_848, "torchvision's docs (num_params)", {}),
    "vgg13_bn": (133_053_736, "torchvision's docs (num_params)", {}),
    "vgg16": (138_357_544, "torchvision's docs (num_params)", {}),
    "vgg16_bn": (138_365_992, "torchvision's docs (num_params)", {}),
    "vgg19": (143_667_240, "torchvision's docs (num_params)", {}),
    "vgg19_bn": (143_678_248, "torchvision's docs (num_params)", {}),
}
# the zoo table (summarize.py table=zoo)
PAPER = {"title": 'Simonyan & Zisserman, Very Deep Convolutional Networks', "year": 2014}
