"""MobileNet-v1 and -v2: paper counts, torchvision parity, width multiplier, depthwise convolutions,
linear bottlenecks, CIFAR stems, dropout. The switches of every model: tests/models/test_registry.py."""

import pytest
import torch
import torchvision
from torch import nn

from checks import assert_same_logits
from models import layers
from models.mobilenet import MODELS, InvertedResidual


def mobilenet_v1(**options) -> nn.Module:
    """On the meta device: structure, counts and shapes, no memory and no arithmetic."""
    with torch.device("meta"):
        return MODELS["mobilenet_v1"](**options)


def mobilenet_v2(**options) -> nn.Module:
    with torch.device("meta"):
        return MODELS["mobilenet_v2"](**options)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def v2_pair():
    torch.manual_seed(0)
    ours = MODELS["mobilenet_v2"](num_classes=1000, stem="imagenet").eval()
    theirs = torchvision.models.mobilenet_v2(num_classes=1000).eval()
    return ours, theirs


@pytest.fixture(scope="module")
def v1_imagenet():
    return mobilenet_v1(num_classes=1000, stem="imagenet")


# ---- MobileNet-v2 against torchvision ------------------------------------


def test_v2_param_count_is_torchvisions(v2_pair):
    ours, theirs = v2_pair
    assert count(ours) == count(theirs)  # and the published count: models/mobilenet.py's PARAMS


def test_v2_state_dict_has_torchvisions_keys_and_shapes(v2_pair):
    ours, theirs = v2_pair
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert [v.shape for v in a.values()] == [v.shape for v in b.values()]


def test_v2_same_logits_after_copying_weights(v2_pair):
    ours, theirs = v2_pair
    assert_same_logits(ours, theirs)


@pytest.mark.parametrize("width_mult", [0.5, 0.75, 1.4])
def test_v2_width_mult_counts_match_torchvision(width_mult):
    ours = count(mobilenet_v2(width_mult=width_mult, stem="imagenet"))
    with torch.device("meta"):
        assert ours == count(torchvision.models.mobilenet_v2(width_mult=width_mult))


def test_v2_width_mult_rounds_to_multiples_of_8_and_keeps_1280():
    thin = mobilenet_v2(width_mult=0.35, stem="imagenet")
    convs = [m for m in thin.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 16  # make_divisible(32 * 0.35 = 11.2, 8)
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert convs[-1].out_channels == 1280  # 1280 * max(1, 0.35)
    assert mobilenet_v2(width_mult=1.4, stem="imagenet").classifier[1].in_features == 1792


# ---- MobileNet-v1: the paper's counts --------------------------------------


def test_v1_paper_count(v1_imagenet):
    model = v1_imagenet
    convs = sum(p.numel() for m in model.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    fc = model.classifier[1]
    assert convs == 3_185_088  # bias-free: a BN follows every conv
    assert len(bns) == 27 and sum(count(b) for b in bns) == 21_888  # gamma + beta
    assert count(fc) == 1024 * 1000 + 1000
    assert model(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 1000)


@pytest.mark.parametrize(
    "alpha, exact, paper_millions",
    [(0.75, 2_585_560, 2.6), (0.5, 1_331_592, 1.3), (0.25, 470_072, 0.5)],  # paper Table 6
)
def test_v1_width_multiplier_counts(alpha, exact, paper_millions):
    model = mobilenet_v1(width_mult=alpha, stem="imagenet")
    assert count(model) == exact
    assert round(exact / 1e6, 1) == paper_millions
    # Every product alpha * channels is whole for these alphas: plain multiplication.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 32 * alpha
    assert convs[-1].out_channels == 1024 * alpha


def test_v1_width_rounding_floors_and_keeps_8_channels():
    convs = [m for m in mobilenet_v1(width_mult=0.6).modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 19  # int(32 * 0.6 = 19.2)
    tiny = [m for m in mobilenet_v1(width_mult=0.1).modules() if isinstance(m, nn.Conv2d)]
    assert tiny[0].out_channels == 8  # max(8, int(3.2))


# ---- structure ---------------------------------------------------------------


@pytest.mark.parametrize("name, n_depthwise", [("mobilenet_v1", 13), ("mobilenet_v2", 17)])
@pytest.mark.parametrize("batchnorm", [True, False])
def test_depthwise_convs_have_one_group_per_channel(name, n_depthwise, batchnorm):
    with torch.device("meta"):
        model = MODELS[name](num_classes=10, stem="cifar", batchnorm=batchnorm)
    grouped = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(grouped) == n_depthwise
    for conv in grouped:
        assert conv.groups == conv.in_channels == conv.out_channels
        assert conv.kernel_size == (3, 3) and conv.weight.shape[1] == 1
    others = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
    assert all(c.kernel_size == (1, 1) for c in others[1:])  # all but the stem are pointwise


@pytest.mark.parametrize("activation", ["relu6", "gelu", "tanh"])
@pytest.mark.parametrize("batchnorm", [True, False])
def test_v2_projection_stays_linear(activation, batchnorm):
    model = mobilenet_v2(num_classes=10, stem="cifar", activation=activation, batchnorm=batchnorm)
    act_type = type(layers.make_activation(activation))
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    for block in blocks:
        tail = list(block.conv.children())[-2 if batchnorm else -1:]
        assert isinstance(tail[0], nn.Conv2d) and tail[0].kernel_size == (1, 1)
        assert not any(isinstance(m, act_type) for m in tail)
        if batchnorm:
            assert isinstance(tail[1], nn.BatchNorm2d)
        # expand (if any) and depthwise end in the chosen activation
        for stage in list(block.conv.children())[: -2 if batchnorm else -1]:
            assert isinstance(stage[-1], act_type)
    # shortcuts: every repeat after the first of a stage, 1 + 2 + 3 + 2 + 2 = 10
    assert sum(b.use_residual for b in blocks) == 10


def test_v2_residual_adds_input():
    block = InvertedResidual(16, 16, 1, 6, "relu6", True).eval()
    x = torch.randn(2, 16, 8, 8)
    assert torch.allclose(block(x), x + block.conv(x))
    assert not InvertedResidual(16, 24, 1, 6, "relu6", True).use_residual
    assert not InvertedResidual(16, 16, 2, 6, "relu6", True).use_residual


@pytest.mark.parametrize("name, cifar_map, imagenet_map", [("mobilenet_v1", 2, 2), ("mobilenet_v2", 4, 2)])
def test_stems_final_map(name, cifar_map, imagenet_map):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        cifar = MODELS[name](num_classes=10, stem="cifar").eval().features(x[..., :32, :32])
        imagenet = MODELS[name](num_classes=10, stem="imagenet").eval().features(x)  # 64 / 32 = 2
    assert cifar.shape[-2:] == (cifar_map, cifar_map)
    assert imagenet.shape[-2:] == (imagenet_map, imagenet_map)


def test_v2_cifar_stem_keeps_the_24_channel_stage_at_full_size():
    features = mobilenet_v2(num_classes=10, stem="cifar").features
    x = features[:4](torch.empty(1, 3, 32, 32, device="meta"))  # stem, the t=1 block, the two c=24 blocks
    assert x.shape == (1, 24, 32, 32)
    assert features[:5](torch.empty(1, 3, 32, 32, device="meta")).shape == (1, 32, 16, 16)  # c=32 keeps stride 2


def test_dropout_places_and_defaults():
    v1, v2 = mobilenet_v1(), mobilenet_v2()
    assert [m.p for m in v1.modules() if isinstance(m, nn.Dropout)] == [0.0]
    assert [m.p for m in v2.modules() if isinstance(m, nn.Dropout)] == [0.2]
    assert isinstance(v2.classifier[0], nn.Dropout) and isinstance(v2.classifier[1], nn.Linear)


def test_cifar_counts():
    assert count(mobilenet_v1(num_classes=10, stem="cifar")) == 3_217_226
    assert count(mobilenet_v2(num_classes=10, stem="cifar")) == 2_236_682


@pytest.mark.parametrize("value", [0, -1.0])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_bad_width_mult_is_one_line(name, value):
    with pytest.raises(layers.ModelOptionError) as err:
        MODELS[name](width_mult=value)
    assert "\n" not in str(err.value) and "width_mult" in str(err.value)
