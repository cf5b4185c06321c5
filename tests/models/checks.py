"""Checks shared by the family tests: models on the meta device, torchvision parity, and a model that trains."""

from __future__ import annotations

import torch
from torch import nn

from models import create_model


def meta(name: str, **options) -> nn.Module:
    """The zoo model on the meta device: structure, counts and shapes, no memory and no arithmetic."""
    with torch.device("meta"):
        return create_model(name, **options)


def torchvision_pair(name: str, device: str = "meta") -> tuple[nn.Module, nn.Module]:
    """(ours in torchvision's form, torchvision's), for 224x224 images and 1000 classes, in eval mode."""
    import torchvision

    with torch.device(device):
        return (create_model(name, num_classes=1000, stem="imagenet", form="torchvision").eval(),
                getattr(torchvision.models, name)(num_classes=1000).eval())


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


def assert_trains(model: nn.Module, x: torch.Tensor | None = None, num_classes: int = 10,
                  every_parameter: bool = True) -> None:
    """Train mode: logits (N, num_classes), finite, and a backward pass that
    reaches the parameters with finite gradients (all of them unless
    ``every_parameter=False``, e.g. when stochastic depth may skip a block);
    eval mode: plain logits of the same shape, whatever train mode returned
    (GoogLeNet adds its auxiliary heads' logits in train mode)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32) if x is None else x
    model.train()
    out = model(x)
    logits, aux = out if isinstance(out, tuple) else (out, [])
    assert logits.shape == (x.shape[0], num_classes) and torch.isfinite(logits).all()
    (logits.square().mean() + sum(a.square().mean() for a in aux)).backward()
    parameters = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in parameters if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert parameters[0].grad is not None and parameters[-1].grad is not None
    if every_parameter:
        assert len(grads) == len(parameters), f"{len(parameters) - len(grads)} parameters got no gradient"
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (x.shape[0], num_classes)
