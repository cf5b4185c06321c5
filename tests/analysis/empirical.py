"""The receptive field measured by gradients, to check analysis/introspection.py's analytic one
(a test's helper: nothing in the library needs it)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from analysis.introspection import Pair, _input_shape, _tensors


@dataclass
class EmpiricalField:
    layer: str
    unit: Pair
    rows: Pair  # first and last input row with a non-zero gradient
    cols: Pair
    pixels: int  # how many input pixels have one (rows x cols when the field is a rectangle)


def empirical_receptive_field(model: nn.Module, input_shape: Sequence[int], layer: str) -> EmpiricalField:
    """The input pixels whose gradient is non-zero for the central unit of
    ``layer``'s output (summed over its channels), i.e. those that reach it.

    Measured on a copy in float64 whose every path passes gradient: weights
    positive and normalized (uniform in [0.5, 1] / fan-in, so values neither
    vanish nor explode), biases 0, BatchNorm an identity, max pooling replaced
    by average pooling of the same window (a max passes gradient to one pixel
    only), activations replaced by the identity, and a positive input. Then
    every path contributes a positive term and no pixel can hide."""
    from models.layers import ACTIVATIONS

    probe = copy.deepcopy(model).double().eval()
    activations = tuple(c for c in ACTIVATIONS.values() if isinstance(c, type))
    for name, module in list(probe.named_modules()):
        parent, _, child = name.rpartition(".")
        owner = probe.get_submodule(parent) if name else None
        if isinstance(module, nn.MaxPool2d) and owner is not None:
            if module.dilation not in (1, (1, 1)):
                raise ValueError(f"{name}: a dilated max pool has no average-pool twin")
            setattr(owner, child, nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode))
        elif isinstance(module, activations) and owner is not None:
            setattr(owner, child, nn.Identity())
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    with torch.no_grad():
        for name, p in probe.named_parameters():
            if p.dim() >= 2:
                p.uniform_(0.5, 1.0).div_(p[0].numel())
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
    captured: list[Tensor] = []
    handle = probe.get_submodule(layer).register_forward_hook(lambda m, a, out: captured.append(next(_tensors(out))))
    shape = _input_shape(input_shape)
    x = (torch.rand(shape, dtype=torch.float64) + 0.5).requires_grad_(True)
    try:
        probe(x)
    finally:
        handle.remove()
    out = captured[-1]
    unit = (out.shape[-2] // 2, out.shape[-1] // 2)
    out[0, :, unit[0], unit[1]].sum().backward()
    mask = x.grad[0].abs().sum(0) > 0
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return EmpiricalField(layer, unit, (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1])), int(mask.sum()))
