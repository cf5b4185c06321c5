"""Building blocks shared by every model in the zoo.

One activation factory serves the whole zoo, so ``activation=tanh`` on the
command line reaches every non-linearity of any model (timm's ``get_act_layer``
idea, kept to a plain name-to-class table). ``batchnorm`` and ``dropout`` are
switches with the same name in every model; the helpers here check them once,
with error messages that name the bad value and what would be valid: a
``ModelOptionError``, the caller's input rather than a bug. ``variants`` turns a
family's builders and tables into its ``MODELS``, the name -> builder table.

Only torch is imported: copy this file with a model file into your project.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


class ModelOptionError(ValueError):
    """A model name or option refused: the caller's input, not a bug. ``user_error``: an entry point
    reports it as one line (exit 2); any other exception from a builder keeps its traceback."""

    user_error = True


class LeCunTanh(nn.Module):
    """The scaled hyperbolic tangent of LeCun et al. (1998), appendix A:
    f(a) = 1.7159 * tanh(2a / 3), chosen so that f(±1) = ±1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


# The name a user types -> the module class it builds. "swish" is the name
# the EfficientNet paper uses for SiLU; both names build nn.SiLU.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01
    "prelu": nn.PReLU,  # one learned slope per layer (He et al. 2015)
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "hardswish": nn.Hardswish,
    "tanh": nn.Tanh,
    "lecun_tanh": LeCunTanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "identity": nn.Identity,  # a linear network: for ablations only
}

ActivationArg = str | Callable[[], nn.Module]

STEMS = ("cifar", "imagenet")


def get_activation(activation: ActivationArg) -> Callable[[], nn.Module]:
    """Return the class (a zero-argument factory) for an activation name.

    A class or any callable returning an ``nn.Module`` is passed through, so
    code can hand in its own activation.
    """
    if isinstance(activation, str):
        key = activation.lower()
        if key not in ACTIVATIONS:
            raise ModelOptionError(f"unknown activation {activation!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
        return ACTIVATIONS[key]
    if callable(activation):
        return activation
    raise ModelOptionError(f"activation must be a name or a module class, got {activation!r}")


def make_activation(activation: ActivationArg) -> nn.Module:
    """A fresh activation module (never shared: PReLU has parameters)."""
    return get_activation(activation)()


def norm2d(channels: int, batchnorm: bool) -> nn.Module:
    """BatchNorm2d when the switch is on, otherwise nothing (Identity)."""
    return nn.BatchNorm2d(channels) if batchnorm else nn.Identity()


def check_number(name: str, value: object, must_be: str, within: Callable[[float], bool] = lambda v: True,
                 integer: bool = False) -> float | int:
    """One-line error for a numeric option out of its range, the same words for every option:
    "<name> must be <must_be>, got <value>". Booleans, non-numbers, nan and inf are refused too."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not within(value):
        raise ModelOptionError(f"{name} must be {must_be}, got {value!r}")
    return value if integer else float(value)


def check_dropout(dropout: float, name: str = "dropout") -> float:
    """Dropout rates (and stochastic depth's) live in [0, 1); 1 would zero every activation."""
    return check_number(name, dropout, "a number in [0, 1)", lambda p: 0.0 <= p < 1.0)


def check_switch(name: str, value: object) -> bool:
    """An on/off switch (``batchnorm``) is true or false: the string "false" or 0 would be taken for a truth
    value and build a network other than the one asked for."""
    if not isinstance(value, bool):
        raise ModelOptionError(f"{name} must be true or false, got {value!r}")
    return value


def check_stem(stem: str) -> str:
    if stem not in STEMS:
        raise ModelOptionError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
    return stem


def check_choice(name: str, value: object, valid: tuple) -> object:
    """One-line error for an option outside its set of valid values, in the words of every
    other room's (datamodules/transforms.py's check_choice, cli/validation.py's rules)."""
    if value not in valid:
        raise ModelOptionError(f"{name}={value!r} is not valid; valid: {', '.join(map(str, valid))}")
    return value


def variants(build: Callable[..., nn.Module], table: Iterable[str] | None = None,
             row: Callable[[str], dict] | None = None) -> dict[str, Callable[..., nn.Module]]:
    """A family's entries of the name -> builder table (``MODELS``), each name written once: one per
    name of ``table``, ``build`` with that name filled in (``build(name, **options)`` reads its row), or,
    without a table, ``build`` itself under its function's name. Options and their defaults are
    ``build``'s keywords, stated there only; ``row(name)``: the options a row sets otherwise (a ``_bn``
    row's batchnorm), bound as that entry's keyword defaults, so that its signature states every default."""
    if table is None:
        return {build.__name__: build}
    return {name: functools.partial(build, name, **(row(name) if row else {})) for name in table}


class ConvNormAct(nn.Sequential):
    """conv -> batchnorm (if on) -> activation (if given).

    The convolution carries a bias only when no batchnorm follows it, since
    batchnorm's shift makes a bias redundant; pass ``bias`` to force either.
    Padding keeps the spatial size for stride 1 ("same" for odd kernels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: ActivationArg | None = "relu",
        batchnorm: bool = True,
        bias: bool | None = None,
        padding: int | None = None,
    ) -> None:
        padding = (kernel_size - 1) // 2 if padding is None else padding
        bias = not batchnorm if bias is None else bias
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias)
        ]
        if batchnorm:
            layers.append(nn.BatchNorm2d(out_channels))
        if activation is not None:
            layers.append(make_activation(activation))
        super().__init__(*layers)
        self.out_channels = out_channels


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never dropping more
    than 10% below ``value``: the rounding of the MobileNet-v2 / EfficientNet
    reference code (``_make_divisible`` in the TensorFlow model garden)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
