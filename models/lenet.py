"""LeNet-5.

Paper: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-Based Learning
Applied to Document Recognition", Proc. IEEE, 1998.

Key idea: learn the features instead of designing them. Two stages of
convolution (local receptive fields, shared weights) followed by
subsampling give a small amount of shift invariance; a few fully connected
layers then classify. On a 32x32 input:

    C1: 6 maps 5x5 conv   -> (N, 6, 28, 28)
    S2: 2x2 subsampling   -> (N, 6, 14, 14)
    C3: 16 maps 5x5 conv  -> (N, 16, 10, 10)
    S4: 2x2 subsampling   -> (N, 16, 5, 5)
    C5: 120 units         -> (N, 120)   (a 5x5 conv over a 5x5 map = fully connected)
    F6: 84 units          -> (N, 84)
    output: num_classes

Two forms (``form``):
- "modern" (``lenet5``'s default): the form taught today: every C3 map sees
  all 6 S2 maps, max-pooling for subsampling, the configured activation (ReLU
  by default), C5 as a fully connected layer and a linear output. For 1x32x32
  inputs and 10 classes it has 61,706 parameters: 156 + 2,416 + 48,120 +
  10,164 + 850.
- "paper" (``lenet5_paper``'s default; section II.B of the paper):
  * C3 is partially connected (Table I): C3 maps 0-5 see 3 contiguous S2
    maps, 6-11 see 4 contiguous, 12-14 see 4 discontinuous, 15 sees all 6.
    Only those 60 kernels exist: 60 * 25 + 16 = 1,516 parameters. The paper's
    reasons: fewer connections, and broken symmetry so maps learn different
    features.
  * S2 and S4 are trainable subsampling: each map's 2x2 sums (stride 2) are
    multiplied by a trainable coefficient, a trainable bias is added, and
    the result goes through the squashing function.
  * The squashing function is the scaled tanh 1.7159 tanh(2a/3) of appendix
    A (``activation="lecun_tanh"``, the default of ``lenet5_paper``).
  * C5 is a 5x5 convolution with 120 maps (1x1 on a 32x32 input), F6 has 84
    units.
  * Weights start uniform in +-2.4/F, F the fan-in of the unit (appendix
    A); biases start at 0.
  Parameters at 1x32x32: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6
  10,164 (together 60,000, the paper's count) + output 850 at 10 classes =
  60,850.

Departures from the paper, and why:
- The paper's output layer is a set of Euclidean RBF units with fixed
  weights (the stylized 7x12 bitmaps of the characters); in both forms here
  (and in every modern re-implementation) it is a linear layer trained with
  cross-entropy, which works for any data set and number of classes.
- Inputs other than 32x32 are allowed (``image_size``): the flattened size
  before C5 (modern) or F6 (paper) is computed from it, where the paper fixes
  32x32 (MNIST's 28x28 digits padded). The paper form needs at least 32x32,
  where C5's 5x5 kernel fits.
- ``batchnorm`` (after each convolution: C1, C3, and C5 in the paper form)
  and ``dropout`` (before F6 and the output) are ablation switches; the paper
  has neither, so both default off.
- ``activation`` replaces every squashing function, including the ones after
  S2 and S4 in the paper form. ``lenet5`` with ``form="paper"`` keeps
  ``lenet5``'s activation (ReLU); ``lenet5_paper`` has the paper's (``lecun_tanh``).
- ``downsample="stride"`` (modern form only; an ablation switch): C1 and C3
  stride 2 and S2 and S4 go, the "all-convolutional" alternative to pooling
  (Springenberg et al. 2015). With 5x5 kernels the map sizes stay those of
  the table above (32 -> 14 -> 5) and so do the parameters; C1 and C3 cost a
  quarter of the MACs. The paper form's subsampling is its own layer, so
  there only ``"pool"`` is accepted.
- ``stem`` makes no sense for LeNet: only ``stem="cifar"`` (no stem) is accepted.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    ActivationArg,
    ModelOptionError,
    check_choice,
    check_dropout,
    check_number,
    check_switch,
    make_activation,
    norm2d,
    variants,
)

FORMS = ("paper", "modern")
DOWNSAMPLES = ("pool", "stride")  # S2/S4 as pooling, or C1/C3 with stride 2 instead

# Table I of the paper: the S2 maps each C3 map sees, one row per C3 map.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),  # 3 contiguous
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),  # 4 contiguous
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # 4 discontinuous
    (0, 1, 2, 3, 4, 5),  # all
)


class Subsampling(nn.Module):
    """S2/S4 of the paper: per map, (sum of each 2x2 block) * coefficient + bias.
    2 trainable parameters per map; the squashing follows as its own module."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sums = nn.functional.avg_pool2d(x, 2) * 4.0  # (N, C, H/2, W/2)
        return sums * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class TableConv2d(nn.Module):
    """A convolution whose output map o sees only the input maps ``table[o]``.

    Only the connected kernels are parameters (``weight``: one k x k kernel
    per connection, in table order); the forward scatters them into a dense
    kernel whose other entries are zero, so gradients reach only them.
    """

    def __init__(self, table: tuple, in_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.table, self.in_channels, self.kernel_size = table, in_channels, kernel_size
        self.out_channels = len(table)
        slots = [o * in_channels + i for o, inputs in enumerate(table) for i in inputs]
        self.register_buffer("slots", torch.tensor(slots), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(slots), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's init: uniform in +-2.4/F, F = k * k * (input maps of the kernel's output map)."""
        fan_in = [len(inputs) * self.kernel_size**2 for inputs in self.table for _ in inputs]
        bound = 2.4 / torch.tensor(fan_in, dtype=self.weight.dtype).view(-1, 1, 1)
        with torch.no_grad():
            self.weight.copy_((torch.rand_like(self.weight) * 2 - 1) * bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def dense_weight(self) -> torch.Tensor:
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels * self.in_channels, k, k)
        return dense.index_copy(0, self.slots, self.weight).view(self.out_channels, self.in_channels, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.dense_weight(), self.bias)


class LeNet5(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int, activation: ActivationArg,
                 batchnorm: bool, dropout: float, image_size: int, downsample: str) -> None:
        super().__init__()
        dropout, batchnorm = check_dropout(dropout), check_switch("batchnorm", batchnorm)
        check_number("image_size", image_size, "an integer >= 16 (LeNet-5's smallest input: 16x16 pixels)",
                     lambda s: s >= 16, integer=True)
        pool = downsample == "pool"
        stride = 1 if pool else 2  # "stride": C1 and C3 subsample, S2 and S4 become Identity
        feature_size = ((image_size - 4) // 2 - 4) // 2 if pool else ((image_size - 5) // 2 - 4) // 2 + 1  # 5 at 32x32
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, stride=stride, bias=not batchnorm),  # C1 (N, 6, 28, 28)
            norm2d(6, batchnorm),
            make_activation(activation),
            nn.MaxPool2d(2) if pool else nn.Identity(),  # S2 (N, 6, 14, 14)
            nn.Conv2d(6, 16, kernel_size=5, stride=stride, bias=not batchnorm),  # C3 (N, 16, 10, 10)
            norm2d(16, batchnorm),
            make_activation(activation),
            nn.MaxPool2d(2) if pool else nn.Identity(),  # S4 (N, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * feature_size * feature_size, 120),  # C5
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(120, 84),  # F6
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(84, num_classes),  # output
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5Paper(nn.Module):
    """LeNet-5 as in section II.B of the paper (see the module docstring)."""

    def __init__(self, *, num_classes: int, in_channels: int, activation: ActivationArg,
                 batchnorm: bool, dropout: float, image_size: int) -> None:
        super().__init__()
        dropout, batchnorm = check_dropout(dropout), check_switch("batchnorm", batchnorm)
        check_number("image_size", image_size, "an integer >= 32 (the paper's LeNet-5's smallest input: 32x32 pixels)",
                     lambda s: s >= 32, integer=True)
        c5_size = ((image_size - 4) // 2 - 4) // 2 - 4  # 1 for a 32x32 input
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, bias=not batchnorm),  # C1 (N, 6, 28, 28)
            norm2d(6, batchnorm),
            make_activation(activation),
            Subsampling(6),  # S2 (N, 6, 14, 14)
            make_activation(activation),
            TableConv2d(C3_TABLE, 6, kernel_size=5, bias=not batchnorm),  # C3 (N, 16, 10, 10)
            norm2d(16, batchnorm),
            make_activation(activation),
            Subsampling(16),  # S4 (N, 16, 5, 5)
            make_activation(activation),
            nn.Conv2d(16, 120, kernel_size=5, bias=not batchnorm),  # C5 (N, 120, 1, 1)
            norm2d(120, batchnorm),
            make_activation(activation),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(120 * c5_size * c5_size, 84),  # F6
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(84, num_classes),  # output: linear instead of the paper's RBF units
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """Appendix A: weights uniform in +-2.4 / F, F the fan-in of the unit;
        biases 0. (TableConv2d does the same for its kernels when built.)"""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                bound = 2.4 / module.weight[0].numel()  # fan-in: in_channels * k * k, or in_features
                nn.init.uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, Subsampling):
                nn.init.uniform_(module.weight, -2.4 / 4, 2.4 / 4)  # a unit sums 4 inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# name -> (form, activation): the row's defaults of ``form`` and ``activation``
LENETS = {"lenet5": ("modern", "relu"), "lenet5_paper": ("paper", "lecun_tanh")}


def lenet(name: str, *, num_classes: int = 10, in_channels: int = 1, activation: ActivationArg | None = None,
          batchnorm: bool = False, dropout: float = 0.0, stem: str = "cifar", image_size: int = 32,
          form: str | None = None, downsample: str = "pool") -> nn.Module:
    """LeNet-5 (LeCun et al. 1998): ``lenet5`` the modern form (61,706 parameters at 1x32x32, 10 classes),
    ``lenet5_paper`` the paper's (60,850); ``form`` and ``activation`` None: the row's."""
    row_form, row_activation = LENETS[name]
    form = check_choice("form", row_form if form is None else form, FORMS)
    activation = row_activation if activation is None else activation
    check_choice("downsample", downsample, DOWNSAMPLES)
    if stem != "cifar":
        raise ModelOptionError(f"LeNet-5 has no stem to choose: stem must be 'cifar', got {stem!r}")
    if form == "paper":
        if downsample != "pool":
            raise ModelOptionError("the paper form of LeNet-5 subsamples with S2 and S4: downsample must be 'pool', "
                                   f"got {downsample!r}")
        return LeNet5Paper(num_classes=num_classes, in_channels=in_channels, activation=activation, batchnorm=batchnorm,
                           dropout=dropout, image_size=image_size)
    return LeNet5(num_classes=num_classes, in_channels=in_channels, activation=activation, batchnorm=batchnorm,
                  dropout=dropout, image_size=image_size, downsample=downsample)


MODELS = variants(lenet, LENETS, lambda name: dict(zip(("form", "activation"), LENETS[name])))

# name -> (parameters as published, where, the options counted): stated here only, tests/models/test_registry.py counts
PARAMS = {
    "lenet5_paper": (60_850, "LeCun et al. 1998: 60,000 trainable parameters up to F6, + 850 in the linear output", {}),
}
# the zoo table (summarize.py table=zoo)
PAPER = {"title": 'LeCun et al., Gradient-Based Learning Applied to Document Recognition', "year": 1998}
