"""AlexNet: torchvision parity, the paper's counts, towers, LRN, where batch norm and dropout go.
The switches of every model: tests/models/test_registry.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.alexnet import TowerLRN, alexnet
from models.layers import ModelOptionError

torch.set_num_threads(1)


def meta(**options) -> nn.Module:
    """Build without allocating or initialising weights: for counts, layout and shapes."""
    with torch.device("meta"):
        return alexnet(**options)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def tv_pair():
    """torchvision's alexnet and ours (form torchvision) holding the same weights."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    theirs = torchvision.models.alexnet(num_classes=1000).eval()
    ours = meta(num_classes=1000, stem="imagenet", form="torchvision").to_empty(device="cpu").eval()  # weights: theirs
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert len(ours_sd) == len(theirs_sd)
    for (k1, a), (k2, b) in zip(ours_sd.items(), theirs_sd.items()):
        assert a.shape == b.shape, (k1, k2)
    ours.load_state_dict(dict(zip(ours_sd, theirs_sd.values())))
    return ours, theirs


@pytest.fixture(scope="module")
def paper_convs():
    """conv2 and conv3 of the paper's form, with real weights (the rest of the net is not needed)."""
    torch.manual_seed(0)
    convs = [m for m in meta(num_classes=10, stem="cifar").features if isinstance(m, nn.Conv2d)][1:3]
    for conv in convs:
        conv.to_empty(device="cpu").reset_parameters()
    return convs


def test_torchvision_parity(tv_pair):
    ours, theirs = tv_pair
    # and the published count: models/alexnet.py's PARAMS, tests/models/test_registry.py
    assert count(ours) == count(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # even the key names
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want, got = theirs(x), ours(x)
    assert got.shape == (2, 1000)
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize(
    "form, stem, num_classes, expected",
    [
        ("paper", "imagenet", 1000, 60_965_224),
        ("paper", "cifar", 10, 35_910_026),
        ("torchvision", "cifar", 10, 36_054_858),
    ],
)
def test_parameter_counts(form, stem, num_classes, expected):
    assert count(meta(num_classes=num_classes, stem=stem, form=form)) == expected


def test_paper_layer_counts():
    # conv1..conv5 of the two-tower net, fc6, fc7, fc8: the grouped layers halve their weights
    model = meta(num_classes=1000)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [count(m) for m in layers] == [
        34_944, 307_456, 885_120, 663_936, 442_624, 37_752_832, 16_781_312, 4_097_000
    ]


@pytest.mark.parametrize(
    "form, widths, groups",
    [("paper", [96, 256, 384, 384, 256], [1, 2, 1, 2, 2]), ("torchvision", [64, 192, 384, 256, 256], [1] * 5)],
)
def test_conv_table(form, widths, groups):
    convs = [m for m in meta(form=form).modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == widths
    assert [c.groups for c in convs] == groups
    assert (convs[0].kernel_size, convs[0].stride) == ((11, 11), (4, 4))
    pools = [m for m in meta(form=form).modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3  # overlapping pooling


@pytest.mark.parametrize("form", ["paper", "torchvision"])
@pytest.mark.parametrize("stem, size, side", [("imagenet", 224, 6), ("cifar", 32, 4)])
def test_shapes(form, stem, size, side):
    model = meta(num_classes=7, stem=stem, form=form)
    x = torch.empty(2, 3, size, size, device="meta")
    assert model.features(x).shape == (2, 256, side, side)
    assert model(x).shape == (2, 7)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.kernel_size == ((11, 11) if stem == "imagenet" else (5, 5))


def test_towers_only_meet_at_conv3(paper_convs):
    conv2, conv3 = paper_convs
    x = torch.randn(1, 96, 8, 8)
    x2 = x.clone()
    x2[:, 48:] += 1.0  # change only the second tower's conv1 maps
    with torch.no_grad():
        y, y2 = conv2(x), conv2(x2)
        torch.testing.assert_close(y[:, :128], y2[:, :128])  # first tower blind to it
        assert not torch.allclose(y[:, 128:], y2[:, 128:])
        z = torch.randn(1, 256, 8, 8)
        z2 = z.clone()
        z2[:, 128:] += 1.0
        assert not torch.allclose(conv3(z)[:, :192], conv3(z2)[:, :192])  # conv3 crosses


def paper_lrn(a: torch.Tensor, towers: int) -> torch.Tensor:
    """Section 3.3 written out: b_i = a_i / (2 + 1e-4 * sum_j a_j^2)^0.75, j within 2 of i in i's tower."""
    per_tower = a.shape[1] // towers
    out = torch.empty_like(a)
    for i in range(a.shape[1]):
        lo, hi = i // per_tower * per_tower, (i // per_tower + 1) * per_tower
        window = a[:, max(lo, i - 2) : min(hi, i + 3)]
        out[:, i] = a[:, i] / (2.0 + 1e-4 * (window**2).sum(1)) ** 0.75
    return out


@pytest.mark.parametrize("towers", [1, 2])
def test_lrn_is_the_papers_formula(towers):
    a = torch.randn(2, 12, 3, 3) * 30  # large enough that the normalization matters
    torch.testing.assert_close(TowerLRN(towers)(a), paper_lrn(a, towers))


def test_lrn_after_conv1_and_conv2_only():
    kinds = [type(m) for m in meta().features]
    assert kinds == [nn.Conv2d, nn.ReLU, TowerLRN, nn.MaxPool2d] * 2 + [nn.Conv2d, nn.ReLU] * 3 + [nn.MaxPool2d]
    assert all(m.towers == 2 for m in meta().features if isinstance(m, TowerLRN))


@pytest.mark.parametrize("form", ["paper", "torchvision"])
def test_batchnorm_switch(form):
    off, on = meta(form=form), meta(form=form, batchnorm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in off.modules())
    assert all(m.bias is not None for m in off.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in on.modules()) == 5
    assert not any(isinstance(m, TowerLRN) for m in on.modules())  # batch norm replaces LRN
    assert all(m.bias is None for m in on.modules() if isinstance(m, nn.Conv2d))


def test_dropout_places():
    paper = [type(m) for m in meta(dropout=0.3).classifier]
    assert paper == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]  # on fc6 and fc7 outputs
    tv = [type(m) for m in meta(dropout=0.3, form="torchvision").classifier]
    assert tv == [nn.Dropout, nn.Linear, nn.ReLU] * 2 + [nn.Linear]  # on fc6 and fc7 inputs
    assert [m.p for m in meta(dropout=0.3).modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]


def test_a_form_it_does_not_have_is_one_line():
    with pytest.raises(ModelOptionError, match=r"form='caffe' is not valid; valid: paper, torchvision") as error:
        meta(form="caffe")
    assert "\n" not in str(error.value)
