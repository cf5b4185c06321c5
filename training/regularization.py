"""Explicit weight penalties added to the loss: L1, L2 and elastic net.

These are terms of the objective, lambda * R(w), so their gradient flows
through backprop like the data loss: L1 adds lambda * sign(w) to each
weight's gradient, L2 adds 2 * lambda * w. They are distinct from an
optimizer's ``weight_decay`` (which, in AdamW, is decoupled from the
gradient altogether; in SGD it equals an L2 penalty of lambda / 2).

The soft-margin SVM (Cortes & Vapnik 1995) minimizes 1/2 ||w||^2 + C sum_i hinge_i.
Divided by C n it is mean_i hinge_i + 1/(2 C n) ||w||^2: C is the inverse of the L2
strength. ``regularization=soft_margin`` takes C and sets strength = 1 / (2 C); since
the data loss here is the batch *mean*, this C is the textbook's C times n (the
number of training examples). Large C: a hard margin, fit every point; small C: a
wide margin that tolerates violations.

By default only weights are penalized (parameters of two or more
dimensions: convolution kernels and linear matrices), not biases and not
the scale and shift of normalization layers, which set the scale of a
layer's output rather than its complexity.
"""

from __future__ import annotations

import torch
from torch import nn

from core.errors import UserError, check_number

KINDS = ("none", "l1", "l2", "elastic_net")
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


class WeightPenalty(nn.Module):
    """``strength`` * (l1_ratio * sum |w| + (1 - l1_ratio) * sum w^2) for
    elastic net; l1 and l2 are the ends (l1_ratio 1 and 0)."""

    def __init__(
        self,
        kind: str = "none",
        strength: float = 1e-4,
        l1_ratio: float = 0.5,
        include_biases: bool = False,
        include_norm: bool = False,
        C: float | None = None,
    ) -> None:
        super().__init__()
        if C is not None:  # the soft margin's C: L2 at strength 1 / (2 C)
            C = check_number("regularization.C", C, "a number > 0", lambda c: c > 0)
            if kind != "l2":
                raise UserError(f"regularization.C is the inverse of an L2 strength: kind must be 'l2', got {kind!r}")
            strength = 1.0 / (2.0 * C)
        if kind not in KINDS:
            raise UserError(f"regularization.kind={kind!r} is not valid; valid: {', '.join(KINDS)}")
        strength = check_number("regularization.strength", strength, "a number >= 0", lambda s: s >= 0)
        l1_ratio = check_number("regularization.l1_ratio", l1_ratio, "a number in [0, 1]", lambda r: 0.0 <= r <= 1.0)
        self.kind, self.strength = kind, strength
        self.l1_ratio = {"l1": 1.0, "l2": 0.0}.get(kind, l1_ratio)
        self.include_biases, self.include_norm = include_biases, include_norm

    @property
    def active(self) -> bool:
        return self.kind != "none" and self.strength > 0

    def penalized(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters this penalty applies to."""
        chosen = []
        for module in model.modules():
            is_norm = isinstance(module, _NORMS)
            for parameter in module.parameters(recurse=False):
                if not parameter.requires_grad:
                    continue
                if is_norm:
                    take = self.include_norm
                else:
                    take = parameter.ndim > 1 or self.include_biases
                if take:
                    chosen.append(parameter)
        return chosen

    def forward(self, model: nn.Module) -> torch.Tensor:
        parameters = self.penalized(model)
        total = parameters[0].new_zeros(())
        for w in parameters:
            if self.l1_ratio > 0:
                total = total + self.l1_ratio * w.abs().sum()
            if self.l1_ratio < 1:
                total = total + (1 - self.l1_ratio) * w.pow(2).sum()
        return self.strength * total
