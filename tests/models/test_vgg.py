"""VGG: torchvision parity for all eight names, the paper's depths, CIFAR head, the ``_bn`` rows,
dropout's places, init. The switches of every model: tests/models/test_registry.py.

The ImageNet models hold 133-144M parameters: layout and counts are checked on
the meta device (no memory, no init); logits are compared with real weights for
vgg16_bn by default and for the other seven with ``-m slow``, one pair
alive at a time.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from checks import meta
from models import vgg as family
from models.layers import ModelOptionError

torch.set_num_threads(1)
NAMES = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
# name -> parameters at 32x32 / 10 classes with the cifar stem (224x224 / 1000: models/vgg.py's PARAMS)
CIFAR_COUNTS = {"vgg11": 9_750_922, "vgg13": 9_935_434, "vgg16": 15_245_130, "vgg19": 20_554_826,
                "vgg11_bn": 9_756_426, "vgg13_bn": 9_941_322, "vgg16_bn": 15_253_578, "vgg19_bn": 20_565_834}
WEIGHT_LAYERS = {"vgg11": 11, "vgg13": 13, "vgg16": 16, "vgg19": 19}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def torchvision_model(name: str, device: str = "cpu") -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    with torch.device(device):
        return getattr(torchvision.models, name)(num_classes=1000)


def test_the_table_and_its_rows_batchnorm():
    assert list(family.MODELS) == NAMES
    for name in NAMES:
        model = meta(name)
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) is name.endswith("_bn")
        assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]  # the paper's
        assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5  # downsample="pool": the paper's


@pytest.mark.parametrize("name", NAMES)
def test_imagenet_layout_matches_torchvision(name):
    ours, theirs = meta(name, num_classes=1000, stem="imagenet"), torchvision_model(name, "meta")
    assert count(ours) == count(theirs)
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)  # same keys in the same order: torchvision weights load as-is
    assert [v.shape for v in ours_sd.values()] == [v.shape for v in theirs_sd.values()]


@pytest.fixture(
    scope="module",
    params=[n if n == "vgg16_bn" else pytest.param(n, marks=pytest.mark.slow) for n in NAMES],
)
def imagenet_pair(request):
    """torchvision's model and ours with the same weights (one pair alive at a time)."""
    name = request.param
    torch.manual_seed(0)
    theirs = torchvision_model(name).eval()
    with torch.no_grad():  # make batch norm's statistics and affine parameters matter
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    ours = meta(name, num_classes=1000, stem="imagenet").to_empty(device="cpu").eval()
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    for a, b in zip(ours_sd.values(), theirs_sd.values(), strict=True):
        assert a.shape == b.shape
    ours.load_state_dict(dict(zip(ours_sd, theirs_sd.values())))
    yield name, ours, theirs
    del ours, theirs


def test_logits_match_torchvision(imagenet_pair):
    name, ours, theirs = imagenet_pair
    x = torch.randn(2, 3, 32, 32)  # the adaptive pool takes 1x1 features to 7x7
    with torch.no_grad():
        want, got = theirs(x), ours(x)
    assert got.shape == (2, 1000)
    scale = want.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("name", NAMES)
def test_cifar_counts_and_shapes(name):
    model = meta(name, num_classes=10, stem="cifar")
    assert count(model) == CIFAR_COUNTS[name]
    x = torch.empty(2, 3, 32, 32, device="meta")
    assert model.features(x).shape == (2, 512, 1, 1)  # five pools: 32 -> 1
    assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [512, 512, 10]
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("name", ["vgg11", "vgg19_bn"])
def test_imagenet_shapes(name):
    model = meta(name, num_classes=1000, stem="imagenet")
    x = torch.empty(1, 3, 224, 224, device="meta")
    assert model.features(x).shape == (1, 512, 7, 7)
    assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [4096, 4096, 1000]
    assert model(x).shape == (1, 1000)


@pytest.mark.parametrize("name", NAMES)
def test_paper_table(name):
    model = meta(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == WEIGHT_LAYERS[name.removesuffix("_bn")]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1) for c in convs)
    assert sorted({c.out_channels for c in convs}) == [64, 128, 256, 512]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5


def test_batchnorm_switch():
    plain, bn = meta("vgg16"), meta("vgg16_bn")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 13
    assert all(c.bias is not None for c in bn.modules() if isinstance(c, nn.Conv2d))  # torchvision keeps the bias
    same = meta("vgg16", batchnorm=True).state_dict()
    assert {k: v.shape for k, v in same.items()} == {k: v.shape for k, v in bn.state_dict().items()}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in meta("vgg16_bn", batchnorm=False).modules())


def test_dropout_places():
    kinds = [type(m) for m in meta("vgg11", dropout=0.2).classifier]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert [m.p for m in meta("vgg11", dropout=0.2).modules() if isinstance(m, nn.Dropout)] == [0.2, 0.2]


def test_init():
    torch.manual_seed(0)
    model = family.MODELS["vgg11"](num_classes=10, stem="cifar")
    conv = model.features[-3]  # 512 -> 512, fan-out 512 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.05)
    assert model.classifier[0].weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_a_downsample_it_does_not_have_is_one_line():
    with pytest.raises(ModelOptionError, match=r"downsample='avg' is not valid; valid: pool, stride") as error:
        meta("vgg11", downsample="avg")
    assert "\n" not in str(error.value)
