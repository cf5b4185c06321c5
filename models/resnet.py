"""ResNet.

Paper: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image
Recognition", CVPR 2016 (arXiv:1512.03385, 2015).

Key idea: let a stack of layers learn a residual F(x) and add the input back,
y = act(F(x) + x). Where the identity is near-optimal the layers only have to
push F towards zero, which plain stacks find hard; with these shortcuts
networks of 100+ layers train and beat their shallower versions. A basic
block is two 3x3 convs; a bottleneck block (ResNet-50 and deeper) is 1x1
(reduce to ``width``) - 3x3 - 1x1 (expand to 4 * ``width``). BN follows each
conv; the activation follows each BN but the block's last, which comes after
the addition. A stage's first block halves the map and widens it, so its
shortcut changes shape too: option A (CIFAR models) subsamples the input with
stride 2 and pads the extra channels with zeros, parameter-free
(``PadShortcut``); option B (ImageNet models) projects with a 1x1 conv + BN.

Shapes, ``resnet50`` on a 224x224 image (Table 1; bottleneck, stages 3-4-6-3):

    stem 7x7/2 conv 64, BN, ReLU, 3x3/2 max-pool  -> (N, 64, 56, 56)
    layer1 .. layer4, widths 64, 128, 256, 512    -> (N, 256, 56, 56) .. (N, 2048, 7, 7)
    global average pool, dropout, linear          -> (N, num_classes)

``resnet20``..``resnet110`` are the CIFAR networks of section 4.2: a 3x3 conv
with 16 channels, 3 stages of n basic blocks with 16, 32, 64 filters on 32x32,
16x16, 8x8 maps, global average pool, linear: 6n + 2 layers, n = 3, 5, 7, 9,
18. Their stem is part of the design (``stem="imagenet"`` is refused);
``shortcut="A"`` as in the paper, or ``"B"`` for 1x1 projections.

Option A's zero channels (``shortcut_padding``). The paper says only that
"the shortcut still performs identity mapping, with extra zero entries
padded for increasing dimensions"; where the zeros go is left open, and the
two readings are different functions of the same weights. ``"end"`` (our
default) keeps the input's channels first and appends every zero after them:
channel k of the block's input is added to channel k of its output.
``"split"`` puts half the zeros before the input's channels and half after,
as akamaster/pytorch_resnet_cifar10 (the most used public reproduction) does,
so its published weights load and give its logits. Trained from scratch the
two are the same network up to a reordering of the residual branch's output
channels, so they reach the same accuracy; what differs is which weights fit.

Parameter counts: ``PARAMS`` at the end of this file (torchvision's for the
ImageNet ResNets; ours for the CIFAR ones, which round to the paper's 0.27M,
0.46M, 0.66M, 0.85M, 1.7M).
The module names are torchvision's (``conv1``, ``layer1.0.bn1``,
``layer2.0.downsample.0``, ``fc``), so its state_dicts load directly.

``form`` (ImageNet ResNets): where a downsampling bottleneck puts its stride.
``"paper"``: on the first 1x1 conv, as in the authors' released models
("ResNet v1"). ``"torchvision"``: on the 3x3 conv ("ResNet v1.5", from
fb.resnet.torch), which then sees every pixel instead of a quarter of them
(NVIDIA reports about +0.5% top-1 on ImageNet). Same parameters either way;
basic blocks (resnet18/34) put the stride on their first 3x3 in both forms.

Stems. ``"imagenet"``: the paper's 7x7 stride-2 conv, BN, activation, 3x3
stride-2 max-pool (224 -> 56). ``"cifar"``: a 3x3 stride-1 conv with the same
channels (64 for the ImageNet ResNets), BN, activation and no max-pool, so
the stages run at 32, 16, 8, 4 pixels (the usual CIFAR adaptation, as in
kuangliu/pytorch-cifar); ``resnet18`` with it is the zoo's default model.

Departures from the paper, and the switches:
- ``activation`` replaces every ReLU (stem, blocks, after each addition).
- ``batchnorm=False`` removes every BN (shortcuts too); the convs get biases.
- ``dropout``: the paper has none; one ``nn.Dropout`` before the linear layer.
- Init as torchvision: Kaiming-normal (fan_out) convs, BN weight 1 and bias
  0, zero conv biases. ``zero_init_residual=True`` (Goyal et al. 2017) zeroes
  each block's last BN gamma, so every block starts as its shortcut; with
  ``batchnorm=False`` it zeroes the branch's last conv instead (as Fixup does).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    ActivationArg,
    ModelOptionError,
    check_choice,
    check_dropout,
    check_stem,
    check_switch,
    make_activation,
    norm2d,
    variants,
)

FORMS = ("paper", "torchvision")
SHORTCUTS = ("A", "B")
PADDINGS = ("end", "split")  # where option A puts its zero channels (module docstring)


class PadShortcut(nn.Module):
    """Option A: the identity, subsampled by ``stride``, with the extra output
    channels filled with zeros: all after the input's (``"end"``), or half
    before and half after them (``"split"``). No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, padding: str) -> None:
        super().__init__()
        self.extra, self.stride = out_channels - in_channels, stride  # option A only ever adds channels
        before = self.extra // 2 if padding == "split" else 0
        self.pad = (0, 0, 0, 0, before, self.extra - before)  # F.pad's order: W, then H, then C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (N, C, H/s, W/s), as a 3x3/s conv with padding 1
        return nn.functional.pad(x, self.pad)  # (N, C + extra, H/s, W/s)


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int, batchnorm: bool,
                  padding: str) -> nn.Module:
    """Identity where the shape stays, else option A (zero-padding) or B (projection)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return PadShortcut(in_channels, out_channels, stride, padding)
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=not batchnorm),
                         norm2d(out_channels, batchnorm))


def zero_init(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Make a residual branch output zero: its last BN's gamma, else its last conv."""
    for p in [norm.weight] if isinstance(norm, nn.BatchNorm2d) else [conv.weight, conv.bias]:
        nn.init.zeros_(p)


class BasicBlock(nn.Module):
    """3x3 conv (stride here) - 3x3 conv, plus the shortcut (Fig. 2 / Fig. 5 left).
    ``form`` is accepted for a common signature: both forms are the same here."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, *, shortcut: str, activation: ActivationArg,
                 batchnorm: bool, form: str, shortcut_padding: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=not batchnorm)
        self.bn1 = norm2d(width, batchnorm)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=not batchnorm)
        self.bn2 = norm2d(width, batchnorm)
        self.downsample = make_shortcut(shortcut, in_channels, width, stride, batchnorm, shortcut_padding)
        self.act_out = make_activation(activation)

    def zero_init_last(self) -> None:
        zero_init(self.conv2, self.bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))  # (N, width, H/s, W/s)
        out = self.bn2(self.conv2(out))
        return self.act_out(out + self.downsample(x))  # the shortcut matches (N, width, H/s, W/s)


class Bottleneck(nn.Module):
    """1x1 conv (reduce) - 3x3 conv - 1x1 conv (expand x4), plus the shortcut
    (Fig. 5 right). The stride sits on the first 1x1 in the paper's form
    (v1) and on the 3x3 in torchvision's (v1.5)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, *, shortcut: str, activation: ActivationArg,
                 batchnorm: bool, form: str, shortcut_padding: str) -> None:
        super().__init__()
        out_channels = width * self.expansion
        stride1, stride3 = (stride, 1) if form == "paper" else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride1, bias=not batchnorm)
        self.bn1 = norm2d(width, batchnorm)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(width, width, 3, stride3, 1, bias=not batchnorm)
        self.bn2 = norm2d(width, batchnorm)
        self.act2 = make_activation(activation)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=not batchnorm)
        self.bn3 = norm2d(out_channels, batchnorm)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride, batchnorm, shortcut_padding)
        self.act_out = make_activation(activation)

    def zero_init_last(self) -> None:
        zero_init(self.conv3, self.bn3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))  # (N, width, H/s, W/s) paper / (N, width, H, W) torchvision
        out = self.act2(self.bn2(self.conv2(out)))  # (N, width, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (N, 4 * width, H/s, W/s)
        return self.act_out(out + self.downsample(x))


class ResNet(nn.Module):
    """Stem, a stage ``layer<i>`` per entry of ``depths`` (stride 2 in the first
    block of all but the first), average pool, dropout, linear. ``widths``: the
    blocks' inner widths; the stem has ``widths[0]`` channels."""

    def __init__(self, block: type[BasicBlock | Bottleneck], depths: tuple[int, ...], widths: tuple[int, ...], *,
                 num_classes: int, in_channels: int, activation: ActivationArg, batchnorm: bool, dropout: float,
                 stem: str, form: str, shortcut: str, shortcut_padding: str, zero_init_residual: bool) -> None:
        super().__init__()
        check_stem(stem)
        check_choice("form", form, FORMS)
        check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("shortcut_padding", shortcut_padding, PADDINGS)
        dropout, batchnorm = check_dropout(dropout), check_switch("batchnorm", batchnorm)
        channels = widths[0]
        kernel, stride = (7, 2) if stem == "imagenet" else (3, 1)
        self.conv1 = nn.Conv2d(in_channels, channels, kernel, stride, kernel // 2, bias=not batchnorm)
        self.bn1 = norm2d(channels, batchnorm)
        self.act1 = make_activation(activation)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        self.num_stages = len(depths)
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(channels, width, 2 if i > 0 and j == 0 else 1, shortcut=shortcut,
                                    activation=activation, batchnorm=batchnorm, form=form,
                                    shortcut_padding=shortcut_padding))
                channels = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's maps, e.g. (N, 2048, 7, 7) for resnet50 at 224x224."""
        # (N, widths[0], H/4, W/4) imagenet stem / (N, widths[0], H, W) cifar: (N, 64, 56, 56) for resnet18-152 at 224,
        # (N, 64, 32, 32) for them with stem cifar, (N, 16, 32, 32) for the CIFAR ResNets
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, widths[-1] * expansion): 512, 2048, or 64 (CIFAR)
        x = torch.flatten(self.avgpool(self.forward_features(x)), 1)
        return self.fc(self.dropout(x))


# Table 1 (ImageNet): name -> (block, blocks per stage); stage widths 64, 128, 256, 512.
RESNETS: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}
# Section 4.2 (CIFAR): name -> n; three stages of n basic blocks, widths 16, 32, 64: 6n + 2 layers.
CIFAR_RESNETS: dict[str, int] = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}


def resnet(name: str, *, num_classes: int = 1000, in_channels: int = 3, activation: ActivationArg = "relu",
           batchnorm: bool = True, dropout: float = 0.0, stem: str = "imagenet", form: str = "paper",
           zero_init_residual: bool = False) -> ResNet:
    """An ImageNet ResNet of Table 1 (He et al. 2015), projection shortcuts (option B)."""
    block, depths = RESNETS[name]
    return ResNet(block, depths, (64, 128, 256, 512), num_classes=num_classes, in_channels=in_channels,
                  activation=activation, batchnorm=batchnorm, dropout=dropout, stem=stem, form=form, shortcut="B",
                  shortcut_padding="end", zero_init_residual=zero_init_residual)


def cifar_resnet(name: str, *, num_classes: int = 10, in_channels: int = 3, activation: ActivationArg = "relu",
                 batchnorm: bool = True, dropout: float = 0.0, stem: str = "cifar", shortcut: str = "A",
                 shortcut_padding: str = "end", zero_init_residual: bool = False) -> ResNet:
    """A CIFAR ResNet of section 4.2 (He et al. 2015), option A; its 3x3, 16-channel stem is fixed."""
    if stem != "cifar":
        raise ModelOptionError(f"{name} is a CIFAR ResNet (fixed 3x3, 16-channel stem): stem must be "
                               f"'cifar', got {stem!r}")
    n = CIFAR_RESNETS[name]
    return ResNet(BasicBlock, (n, n, n), (16, 32, 64), num_classes=num_classes, in_channels=in_channels,
                  activation=activation, batchnorm=batchnorm, dropout=dropout, stem=stem, form="paper",
                  shortcut=shortcut, shortcut_padding=shortcut_padding, zero_init_residual=zero_init_residual)


MODELS = variants(resnet, RESNETS) | variants(cifar_resnet, CIFAR_RESNETS)

# name -> (parameters as published, where, the options counted): stated here only, tests/models/test_registry.py counts
PARAMS = {
    "resnet18": (11_689_512, "torchvision's docs (num_params)", {"form": "torchvision"}),
    "resnet34": (21_797_672, "torchvision's docs (num_params)", {"form": "torchvision"}),
    "resnet50": (25_557_032, "torchvision's docs (num_params)", {"form": "torchvision"}),
    "resnet101": (44_549_160, "torchvision's docs (num_params)", {"form": "torchvision"}),
    "resnet152": (60_192_808, "torchvision's docs (num_params)", {"form": "torchvision"}),
    "resnet20": (269_722, "He et al. 2015, Table 6: 0.27M", {}),
    "resnet32": (464_154, "He et al. 2015, Table 6: 0.46M", {}),
    "resnet44": (658_586, "He et al. 2015, Table 6: 0.66M", {}),
    "resnet56": (853_018, "He et al. 2015, Table 6: 0.85M", {}),
    "resnet110": (1_727_962, "He et al. 2015, Table 6: 1.7M", {}),
}
# the zoo table (summarize.py table=zoo)
PAPER = {"title": 'He et al., Deep Residual Learning for Image Recognition', "year": 2015}
