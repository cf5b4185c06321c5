"""DenseNet: torchvision parity, the paper's counts, dense connectivity, where dropout goes, growth
and compression. The switches of every model: tests/models/test_registry.py.

Layout and counts of the four ImageNet models are checked on the meta device; logits with real
weights for densenet121 by default and for the other three with ``-m slow``."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from checks import meta
from models import densenet
from models.layers import ModelOptionError

# the paper's Table 1 models, which torchvision ships (their published counts: models/densenet.py's PARAMS)
TORCHVISION = ["densenet121", "densenet161", "densenet169", "densenet201"]
DENSENET = densenet.MODELS




def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomise_batchnorm(model: nn.Module) -> None:
    """Give every BN non-trivial statistics and affine terms, so a BN copied
    into the wrong place changes the logits."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_layout(name):
    """Same parameter count, state_dict names, order and shapes: torchvision's weights load by key."""
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)(weights=None)
    ours = meta(name, num_classes=1000, stem="imagenet", form="torchvision")
    assert num_params(ours) == num_params(theirs)
    assert ([(k, v.shape) for k, v in ours.state_dict().items()]
            == [(k, v.shape) for k, v in theirs.state_dict().items()])


@pytest.mark.parametrize("name", ["densenet121", *(pytest.param(n, marks=pytest.mark.slow) for n in TORCHVISION[1:])])
def test_torchvision_logits(name):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None)
    randomise_batchnorm(theirs)
    ours = meta(name, num_classes=1000, stem="imagenet", form="torchvision").to_empty(device="cpu")
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = theirs.eval()(x), ours.eval()(x)
    assert got.shape == (2, 1000)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_torchvision_form_drops_like_torchvision():
    """Train mode, same seed: form="torchvision" draws the same dropout masks
    at the same places as torchvision's drop_rate; the paper's form does not."""
    torch.manual_seed(0)
    theirs = torchvision.models.densenet121(weights=None, drop_rate=0.3).train()
    tv_form = meta("densenet121", dropout=0.3, form="torchvision").to_empty(device="cpu").train()
    paper_form = meta("densenet121", dropout=0.3).to_empty(device="cpu").train()
    tv_form.load_state_dict(theirs.state_dict())
    paper_form.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 32, 32)
    outputs = []
    for model in (theirs, tv_form, paper_form):
        torch.manual_seed(5)
        with torch.no_grad():
            outputs.append(model(x))
    torch.testing.assert_close(outputs[1], outputs[0])
    assert not torch.allclose(outputs[2], outputs[0], atol=1e-3)


def test_dropout_places():
    """Paper: after every conv but the stem's (2 per dense layer + 1 per
    transition); torchvision: only on each dense layer's new features."""
    layers, transitions = 48, 2
    for form, expected in (("paper", 2 * layers + transitions), ("torchvision", layers)):
        model = meta("densenet_bc_100", dropout=0.2, form=form)
        drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        assert len(drops) == expected and all(m.p == 0.2 for m in drops)
    assert isinstance(model.classifier, nn.Linear)  # no dropout before the classifier


def test_densenet_bc_100_parameter_count():
    model = meta("densenet_bc_100")
    assert model.classifier.in_features == 342  # 150 + 16 * 12


def test_densenet_bc_100_is_cifar_only():
    with pytest.raises(ModelOptionError, match="densenet_bc_100 is a CIFAR model: stem must be 'cifar'") as error:
        meta("densenet_bc_100", stem="imagenet")
    assert "\n" not in str(error.value)


def transition_channels(model: nn.Module, size: int) -> list[tuple[int, int]]:
    """(channels in, channels out) of every transition, measured on a forward pass."""
    seen = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].shape[1], out.shape[1])))
        for name, m in model.features.named_children() if name.startswith("transition")
    ]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize(
    "growth_rate, compression, expected",
    [
        # k0 = 2k, a block adds 16 k, the transition keeps floor(theta m).
        (12, 0.5, [(24 + 16 * 12, 108), (108 + 16 * 12, 150)]),  # 216 -> 108, 300 -> 150
        (12, 1.0, [(216, 216), (216 + 192, 408)]),  # DenseNet-B: no compression
        (8, 0.4, [(16 + 128, 57), (57 + 128, 74)]),  # floor(0.4 * 144) = floor(57.6) = 57, 0.4 * 185 = 74
    ],
)
def test_transition_channels_follow_growth_and_compression(growth_rate, compression, expected):
    model = DENSENET["densenet_bc_100"](growth_rate=growth_rate, compression=compression)
    assert transition_channels(model, 32) == expected
    assert model.classifier.in_features == expected[-1][1] + 16 * growth_rate


def test_imagenet_transitions_halve_channels():
    """densenet121: 64 + 6*32 = 256 -> 128, 128 + 12*32 = 512 -> 256, 256 + 24*32 = 1024 -> 512."""
    model = DENSENET["densenet121"](num_classes=10, stem="cifar")
    assert transition_channels(model, 32) == [(256, 128), (512, 256), (1024, 512)]
    assert model.classifier.in_features == 512 + 16 * 32


def test_dense_layer_keeps_its_input():
    """A dense layer passes its input through untouched and appends k maps."""
    layer = densenet.DenseLayer(20, 12, "relu", True, 0.0, "paper").eval()
    x = torch.randn(2, 20, 8, 8)
    y = layer(x)
    assert y.shape == (2, 32, 8, 8)
    assert torch.equal(y[:, :20], x)


@pytest.mark.parametrize("compression", [0, -0.5, 1.5, True, "half"])
def test_bad_compression(compression):
    with pytest.raises(ModelOptionError, match="compression") as error:
        meta("densenet_bc_100", compression=compression)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("option, value", [("form", "keras"), ("growth_rate", 0), ("growth_rate", 2.5)])
def test_bad_options(option, value):
    with pytest.raises(ModelOptionError, match=option) as error:
        meta("densenet121", **{option: value})
    assert "\n" not in str(error.value)


def test_activation_reaches_every_pre_activation():
    model = meta("densenet_bc_100", activation="elu")
    # stem conv has none after it (CIFAR); 2 per dense layer, 1 per transition, 1 before pooling
    assert sum(isinstance(m, nn.ELU) for m in model.modules()) == 2 * 48 + 2 + 1
    convs = [m for m in meta("densenet_bc_100", batchnorm=False).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 48 + 2  # the stem, two per dense layer, one per transition


def test_imagenet_stem_shapes():
    model = meta("densenet121", num_classes=7, in_channels=1)
    stem = model.features[:4]
    assert stem(torch.empty(1, 1, 224, 224, device="meta")).shape == (1, 64, 56, 56)
