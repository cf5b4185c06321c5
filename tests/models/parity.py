"""The torchvision parity check shared by the family tests."""

from __future__ import annotations

import torch
from torch import nn


def assert_same_logits(ours: nn.Module, theirs: nn.Module, size: int = 64, seed: int = 1) -> None:
    """Copy torchvision's tensors into ours in state_dict order (shapes must
    match pairwise), then both must give the same logits in eval mode."""
    torch.manual_seed(seed)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        # fresh BNs are the identity (mean 0, var 1, gamma 1, beta 0): give them real
        # values so that a mix-up between BN layers shows in the logits
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
        for mine, tv in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
            assert mine.shape == tv.shape
            mine.copy_(tv)
        x = torch.randn(1, 3, size, size)
        expected, got = theirs(x), ours(x)
    assert got.shape == (1, 1000)
    assert torch.allclose(got, expected, atol=1e-5 * expected.abs().max().item() + 1e-7)
