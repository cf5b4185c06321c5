"""GoogLeNet (Inception-v1).

Paper: C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov,
D. Erhan, V. Vanhoucke, A. Rabinovich, "Going Deeper with Convolutions",
arXiv:1409.4842 (2014), CVPR 2015.

Key idea: the inception module. Four branches look at the same input in
parallel (a 1x1 conv, a 3x3 conv, a 5x5 conv and a 3x3 max-pool) and their
outputs are concatenated along the channels, so each module mixes several
receptive-field sizes. A 1x1 "reduce" conv before each 3x3 and 5x5 conv,
and a 1x1 "pool proj" after the pool, keep the channel counts, and so the
cost, in check: 22 weight layers deep with about 7M parameters, 12x fewer
than AlexNet. Two auxiliary classifiers, on the outputs of modules 4a and 4d,
add gradient to the middle of the network during training (their losses are
added with weight 0.3) and are thrown away at inference.

The nine modules are the paper's Table 1, kept as data (``INCEPTION``); a
module's input width is the sum of the previous module's four branches. At
224x224 (paper form):

    conv 7x7/2 -> maxpool 3x3/2 -> LRN   (N, 64, 56, 56)
    conv 1x1, conv 3x3 -> LRN -> maxpool (N, 192, 28, 28)
    inception 3a, 3b -> maxpool 3x3/2    (N, 480, 14, 14)
    inception 4a..4e -> maxpool 3x3/2    (N, 832, 7, 7)    aux heads after 4a, 4d
    inception 5a, 5b -> avgpool          (N, 1024, 1, 1)
    dropout 0.4 -> linear                (N, num_classes)

Aux head (paper): avgpool 5x5/3 (14x14 -> 4x4), 1x1 conv 128, FC 1024,
dropout 0.7, FC num_classes. Its rate is ``aux_dropout``, apart from
``dropout`` (0.4, before the main classifier), so a sweep over ``dropout``
leaves the heads as the paper has them; ``aux_dropout=None`` (default) means
the paper's 0.7, or 0 when ``dropout=0``, so that switching dropout off
leaves no dropout anywhere in the net.

Forward contract: in train mode with ``aux_logits=True`` the model returns
``(logits, [aux1_logits, aux2_logits])``; in eval mode, or with
``aux_logits=False``, it returns the logits alone (the heads are not run).

``form="paper"`` (default), 224x224 and 1000 classes: 6,998,552 parameters
without the aux heads (weights 6,990,272 + biases 8,280), 13,378,280 with
both. Table 1 sums to about 6.8M; its per-layer figures are in units of 1024
(e.g. 3a: 163,328 weights = 159.5K), and a few of them are slightly off.
Departures from the paper, and why:
- Stride-2 max-pools round up (``ceil_mode``), as in the BVLC Caffe
  reproduction; that gives Table 1's 56/28/14/7 map sizes (the paper trained
  on DistBelief and does not say how it pads).
- LRN (size 5, alpha 1e-4, beta 0.75, k 1) takes the BVLC Caffe model's
  constants; the paper names LRN's places but not its constants.
- The paper does not state its initialisation; convs get He (Kaiming) normal
  init with zero bias, so the 22 layers train without batchnorm.
- ``batchnorm`` (default off, as in the paper) puts a BatchNorm after every
  conv; LRN stays where the paper has it either way.

``form="torchvision"`` reproduces ``torchvision.models.googlenet`` with its
parameter names (``conv1.conv.weight``, ``inception3a.branch2.1.bn.running_var``,
``aux1.fc2.bias``, ...), so torchvision's ImageNet weights load by key
(``load_state_dict(..., strict=True)``; the paper form uses the same names).
Those weights come with torchvision's ``transform_input=True``, which turns
ImageNet-normalised images into the [-1, 1] scaling of the TF-slim model;
this model has no such step: give it ``2 * pixels - 1`` for pixels in [0, 1].
6,624,904 parameters without the aux heads, 13,004,888 with them. It departs
from the paper in:
- the "5x5" branch uses a 3x3 conv (pytorch/vision issue #906): its weights
  were ported from TF-slim's inception_v1, which has this slip
  (tensorflow/models issue #443), and cannot change without retraining;
- a BatchNorm (eps 0.001) after every conv and no LRN, again as the TF-slim
  model it was ported from (closer to BN-Inception than to the paper); with
  ``batchnorm=False`` this form has no BN and its convs get a bias instead;
- the pool before 5a is 2x2/2, the aux heads pool adaptively to 4x4,
  dropout before the classifier is 0.2, and weights start from a truncated
  normal (std 0.01) as with torchvision's ``init_weights=True``.
``batchnorm`` and ``dropout`` default to None, meaning "the form's default":
off and 0.4 for the paper, on and 0.2 for torchvision.

CIFAR stem (``stem="cifar"``): ``conv3`` becomes one 3x3 stride-1 conv from
the image to 192 channels, followed as before by ``lrn2`` (paper form) and the
3x3/2 ``maxpool2``; the 7x7/2 conv, the first pool and LRN and the 1x1 conv
(``conv1``, ``maxpool1``, ``lrn1``, ``conv2``) are identities. So module 3a
sees 16x16 maps (the paper's 3a sees 28x28, an eighth of its input): 3a/3b
at 16x16, 4a-4e at 8x8, 5a/5b at 4x4. Letting 3a see 32x32 (as kuangliu's CIFAR GoogLeNet
does) costs four times the compute (1.45 G multiply-adds per image against
0.37 G; forward+backward of two images on one CPU core 0.3 s against 0.1 s)
for a model whose point is the module, not the resolution.
The aux heads pool their 8x8 maps adaptively to 4x4 (a 2x2/2 average pool),
so they keep the paper's 4x4x128 -> FC 1024 shape and parameter count.
At 32x32 and 10 classes: 5,864,762 parameters without the aux heads,
10,214,990 with them (paper form); 5,490,986 / 9,841,470 (torchvision form).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .layers import ActivationArg, check_choice, check_dropout, check_stem, check_switch, make_activation, variants

FORMS = ("paper", "torchvision")

# Table 1 of the paper: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def lrn() -> nn.LocalResponseNorm:
    """Local response normalisation with the BVLC Caffe GoogLeNet's constants."""
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


class BasicConv2d(nn.Sequential):
    """conv -> batchnorm (if on) -> activation: ``layers.ConvNormAct`` under
    torchvision's names (``conv``, ``bn``), so that the state_dict keys match."""

    def __init__(
        self, cin: int, cout: int, k: int, stride: int = 1, *, activation: ActivationArg, batchnorm: bool
    ) -> None:
        # "same" padding at stride 1; a conv bias only without BN, whose shift makes it redundant
        layers = OrderedDict(conv=nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=not batchnorm))
        if batchnorm:
            layers["bn"] = nn.BatchNorm2d(cout)
        layers["act"] = make_activation(activation)
        super().__init__(layers)


class Inception(nn.Module):
    """Four parallel branches, concatenated: 1x1 | 1x1->3x3 | 1x1->5x5 | pool->1x1."""

    def __init__(
        self, in_channels: int, widths: tuple[int, ...], activation: ActivationArg, batchnorm: bool,
        big_kernel: int = 5,  # 3 in the torchvision form
    ) -> None:
        super().__init__()
        n1, n3r, n3, n5r, n5, npool = widths

        def conv(cin: int, cout: int, k: int) -> BasicConv2d:
            return BasicConv2d(cin, cout, k, activation=activation, batchnorm=batchnorm)

        self.branch1 = conv(in_channels, n1, 1)
        self.branch2 = nn.Sequential(conv(in_channels, n3r, 1), conv(n3r, n3, 3))
        self.branch3 = nn.Sequential(conv(in_channels, n5r, 1), conv(n5r, n5, big_kernel))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(in_channels, npool, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)


class AuxHead(nn.Sequential):
    """Auxiliary classifier: pool to 4x4, 1x1 conv 128, FC 1024, dropout, FC."""

    def __init__(
        self, in_channels: int, num_classes: int, pool: nn.Module, activation: ActivationArg, batchnorm: bool,
        dropout: float,
    ) -> None:
        super().__init__(
            OrderedDict(
                pool=pool,  # (N, C, 4, 4)
                conv=BasicConv2d(in_channels, 128, 1, activation=activation, batchnorm=batchnorm),  # (N, 128, 4, 4)
                flatten=nn.Flatten(),  # (N, 2048)
                fc1=nn.Linear(128 * 4 * 4, 1024),
                act=make_activation(activation),
                dropout=nn.Dropout(dropout),
                fc2=nn.Linear(1024, num_classes),
            )
        )


class GoogLeNet(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int, activation: ActivationArg,
                 batchnorm: bool, dropout: float, stem: str, form: str, aux_logits: bool, aux_dropout: float) -> None:
        super().__init__()
        check_choice("form", form, FORMS)
        check_stem(stem)
        dropout, aux_dropout = check_dropout(dropout), check_dropout(aux_dropout)
        batchnorm = check_switch("batchnorm", batchnorm)
        paper = form == "paper"

        def conv(cin: int, cout: int, k: int, stride: int = 1) -> BasicConv2d:
            return BasicConv2d(cin, cout, k, stride, activation=activation, batchnorm=batchnorm)

        def pool(k: int = 3) -> nn.MaxPool2d:
            return nn.MaxPool2d(k, stride=2, ceil_mode=True)

        def inception(cin: int, name: str) -> Inception:
            return Inception(cin, INCEPTION[name], activation=activation, batchnorm=batchnorm,
                             big_kernel=5 if paper else 3)

        def aux_head(cin: int) -> AuxHead | None:
            # the paper's 5x5/3 average pool turns 14x14 maps (224x224 inputs) into
            # 4x4; elsewhere pool adaptively to 4x4
            aux_pool = nn.AvgPool2d(5, stride=3) if paper and stem == "imagenet" else nn.AdaptiveAvgPool2d(4)
            return AuxHead(cin, num_classes, aux_pool, activation, batchnorm, aux_dropout) if aux_logits else None

        # Shapes at 224x224; the CIFAR stem gives 16x16 maps to 3a, 8x8 to 4a, 4x4 to 5a.
        if stem == "imagenet":
            self.conv1 = conv(in_channels, 64, 7, stride=2)  # (N, 64, 112, 112)
            self.maxpool1 = pool()  # (N, 64, 56, 56)
            self.lrn1 = lrn() if paper else nn.Identity()
            self.conv2 = conv(64, 64, 1)
            self.conv3 = conv(64, 192, 3)  # (N, 192, 56, 56)
        else:  # only conv3, on the image
            self.conv1, self.maxpool1, self.lrn1, self.conv2 = (nn.Identity() for _ in range(4))
            self.conv3 = conv(in_channels, 192, 3)  # (N, 192, 32, 32)
        self.lrn2 = lrn() if paper else nn.Identity()
        self.maxpool2 = pool()  # (N, 192, 28, 28)

        # A module's input width is the sum of the previous module's four branches.
        self.inception3a = inception(192, "3a")  # (N, 256, 28, 28)
        self.inception3b = inception(256, "3b")  # (N, 480, 28, 28)
        self.maxpool3 = pool()  # (N, 480, 14, 14)
        self.inception4a = inception(480, "4a")  # (N, 512, 14, 14)
        self.inception4b = inception(512, "4b")  # (N, 512, 14, 14)
        self.inception4c = inception(512, "4c")  # (N, 512, 14, 14)
        self.inception4d = inception(512, "4d")  # (N, 528, 14, 14)
        self.inception4e = inception(528, "4e")  # (N, 832, 14, 14)
        self.maxpool4 = pool() if paper else pool(2)  # (N, 832, 7, 7); torchvision pools 2x2/2
        self.inception5a = inception(832, "5a")  # (N, 832, 7, 7)
        self.inception5b = inception(832, "5b")  # (N, 1024, 7, 7)

        # Aux heads (None with aux_logits=False), registered after 5b as in torchvision.
        self.aux1 = aux_head(512)  # on 4a
        self.aux2 = aux_head(528)  # on 4d
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # (N, 1024, 1, 1): the paper's 7x7 average pool at 224x224
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self._init_weights(paper)

    def _init_weights(self, paper: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = 1e-5 if paper else 1e-3
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif paper and isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif not paper and isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2.0, b=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        heads = self.training and self.aux1 is not None  # the aux heads run in training only
        x = self.lrn1(self.maxpool1(self.conv1(x)))  # (N, 64, 56, 56); identities with the CIFAR stem
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))  # (N, 192, 28, 28)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # (N, 480, 14, 14)
        x = self.inception4a(x)  # (N, 512, 14, 14)
        aux1 = self.aux1(x) if heads else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (N, 528, 14, 14)
        aux2 = self.aux2(x) if heads else None
        x = self.maxpool4(self.inception4e(x))  # (N, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))  # (N, 1024, 7, 7)
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))  # (N, num_classes)
        return (logits, [aux1, aux2]) if heads else logits


def googlenet(*, num_classes: int = 1000, in_channels: int = 3, activation: ActivationArg = "relu",
              batchnorm: bool | None = None, dropout: float | None = None, stem: str = "imagenet", form: str = "paper",
              aux_logits: bool = True, aux_dropout: float | None = None) -> GoogLeNet:
    """GoogLeNet / Inception-v1 (Szegedy et al. 2014).

    ``batchnorm=None`` and ``dropout=None`` take the form's defaults: no BN and
    0.4 for ``form="paper"`` (6,998,552 parameters at 224x224, 1000 classes,
    without aux heads), BN and 0.2 for ``form="torchvision"`` (6,624,904).
    ``aux_dropout=None``: 0.7 in the aux heads, 0 when ``dropout=0``.
    """
    check_choice("form", form, FORMS)
    if batchnorm is None:
        batchnorm = form == "torchvision"
    if dropout is None:
        dropout = 0.4 if form == "paper" else 0.2
    if aux_dropout is None:
        aux_dropout = 0.7 if dropout else 0.0
    return GoogLeNet(
        num_classes=num_classes, in_channels=in_channels, activation=activation, batchnorm=batchnorm,
        dropout=dropout, stem=stem, form=form, aux_logits=aux_logits, aux_dropout=aux_dropout,
    )


MODELS = variants(googlenet)

# name -> (parameters as published, where, the options counted): stated here only, tests/models/test_registry.py counts
PARAMS = {"googlenet": (6_624_904, "torchvision's docs (num_params), no auxiliary heads",
                        {"form": "torchvision", "aux_logits": False})}
# the zoo table (summarize.py table=zoo)
PAPER = {"title": 'Szegedy et al., Going Deeper with Convolutions', "year": 2014}
