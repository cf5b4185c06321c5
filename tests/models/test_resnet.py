"""ResNet: torchvision parity, the CIFAR ResNets' exact counts, option A shortcuts, where the
bottleneck's stride sits per form, stems, init, zero_init_residual, where dropout goes. The switches
of every model: tests/models/test_registry.py.

Layout and counts of the five ImageNet ResNets are checked on the meta device; logits with real
weights for resnet18 and resnet50 (a basic and a bottleneck net) by default, the rest with ``-m slow``."""

import pytest
import torch
from torch import nn

from checks import assert_same_logits, meta, torchvision_pair
from models import layers
from models.resnet import MODELS, BasicBlock, Bottleneck, PadShortcut, ResNet

IMAGENET_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR_NAMES = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
resnet18, resnet20, resnet50 = MODELS["resnet18"], MODELS["resnet20"], MODELS["resnet50"]


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- ImageNet ResNets against torchvision -------------------------------------


@pytest.mark.parametrize("name", IMAGENET_NAMES)
def test_torchvision_count_keys_and_shapes(name):
    ours, theirs = torchvision_pair(name)
    assert count(ours) == count(theirs)  # and the published count: models/resnet.py's PARAMS
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)  # same names: torchvision checkpoints load as they are
    assert [v.shape for v in a.values()] == [v.shape for v in b.values()]


@pytest.mark.parametrize("name", ["resnet18", "resnet50", *(pytest.param(n, marks=pytest.mark.slow)
                                                             for n in ("resnet34", "resnet101", "resnet152"))])
def test_same_logits_after_copying_weights(name):
    torch.manual_seed(0)
    assert_same_logits(*torchvision_pair(name, "cpu"))


# ---- form: where the bottleneck's stride sits -----------------------------------


def strides(model: nn.Module) -> dict[str, tuple]:
    return {name: m.stride for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def test_forms_differ_only_in_the_bottleneck_stride():
    paper, tv = meta("resnet50", form="paper"), meta("resnet50", form="torchvision")
    assert count(paper) == count(tv)
    assert [v.shape for v in paper.state_dict().values()] == [v.shape for v in tv.state_dict().values()]
    a, b = strides(paper), strides(tv)
    differ = sorted(k for k in a if a[k] != b[k])
    # the first block of layer2..4 downsamples: paper on the 1x1 (v1), torchvision on the 3x3 (v1.5)
    assert differ == [f"layer{i}.0.{c}" for i in (2, 3, 4) for c in ("conv1", "conv2")]
    for i in (2, 3, 4):
        block_a, block_b = getattr(paper, f"layer{i}")[0], getattr(tv, f"layer{i}")[0]
        assert (block_a.conv1.stride, block_a.conv2.stride) == ((2, 2), (1, 1))
        assert (block_b.conv1.stride, block_b.conv2.stride) == ((1, 1), (2, 2))
        assert block_a.conv1.kernel_size == (1, 1) and block_b.conv2.kernel_size == (3, 3)
        assert block_a.downsample[0].stride == block_b.downsample[0].stride == (2, 2)
    assert paper.layer1[0].conv1.stride == (1, 1)  # layer1 never downsamples (the max-pool did)


def tiny(block: type[BasicBlock | Bottleneck], form: str, **switches) -> ResNet:
    """A two-stage ResNet of ``block`` (the second stage downsamples), small enough to run anywhere."""
    options = dict(num_classes=10, in_channels=3, activation="relu", batchnorm=True, dropout=0.0, stem="cifar",
                   shortcut="B", shortcut_padding="end", zero_init_residual=False)
    return ResNet(block, (1, 2), (8, 16), **{**options, **switches}, form=form)


@pytest.mark.parametrize("block, same", [(BasicBlock, True), (Bottleneck, False)])
def test_forms_give_same_logits_only_for_basic_blocks(block, same):
    torch.manual_seed(0)
    paper, tv = tiny(block, "paper").eval(), tiny(block, "torchvision").eval()
    tv.load_state_dict(paper.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a, b = paper(x), tv(x)
    assert a.shape == b.shape == (1, 10)
    assert torch.allclose(a, b) is same


# ---- CIFAR ResNets (section 4.2) --------------------------------------------------


@pytest.mark.parametrize("name, n, paper_millions", [
    ("resnet20", 3, 0.27), ("resnet32", 5, 0.46), ("resnet44", 7, 0.66), ("resnet56", 9, 0.85), ("resnet110", 18, 1.7)])
def test_cifar_resnet_counts_and_depth(name, n, paper_millions):
    model = meta(name)  # defaults: 10 classes, stem cifar, option A
    exact = count(model)  # the exact count, stated in models/resnet.py's PARAMS, is checked by test_registry.py
    assert round(exact / 1e6, 2 if n < 18 else 1) == paper_millions
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 6 * n + 2  # option A adds no convs
    assert all(m.kernel_size == (3, 3) for m in weighted if isinstance(m, nn.Conv2d))
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [n, n, n]
    assert not hasattr(model, "layer4") and model.fc.in_features == 64


def test_cifar_resnet_maps_are_32_16_8():
    model = resnet20().eval()
    shapes = []
    for stage in (model.layer1, model.layer2, model.layer3):
        stage.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape[1:])))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert shapes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert model.conv1.kernel_size == (3, 3) and model.conv1.out_channels == 16
    assert isinstance(model.maxpool, nn.Identity)


def test_option_a_shortcut_has_no_parameters_and_pads_zeros():
    shortcut = PadShortcut(16, 32, 2, "end")
    assert count(shortcut) == 0 and not list(shortcut.buffers())
    x = torch.randn(2, 16, 32, 32)
    out = shortcut(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])  # identity, subsampled
    assert torch.equal(out[:, 16:], torch.zeros(2, 16, 16, 16))  # the extra channels are zero
    assert PadShortcut(3, 5, 1, "end")(torch.ones(1, 3, 7, 7)).sum() == 3 * 49  # odd maps: ceil(7/1)
    assert PadShortcut(4, 4, 2, "end")(torch.ones(1, 4, 7, 7)).shape == (1, 4, 4, 4)  # as a 3x3/2 conv


def test_shortcut_options_in_the_cifar_resnets():
    a, b = resnet20(shortcut="A"), resnet20(shortcut="B")
    pads = [m for m in a.modules() if isinstance(m, PadShortcut)]
    assert len(pads) == 2 and [(p.extra, p.stride) for p in pads] == [(16, 2), (32, 2)]
    projections = [m for m in b.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [(p.in_channels, p.out_channels, p.stride) for p in projections] == [(16, 32, (2, 2)), (32, 64, (2, 2))]
    assert count(b) - count(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64) == 2_752  # conv + BN gamma, beta
    block = BasicBlock(16, 32, 2, shortcut="A", activation="relu", batchnorm=True, form="paper",
                       shortcut_padding="end").eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(block.bn2(block.conv2(block.act1(block.bn1(block.conv1(x)))))
                                                   + block.downsample(x)))


def test_cifar_resnets_refuse_the_imagenet_stem_in_one_line():
    with pytest.raises(layers.ModelOptionError) as err:
        resnet20(stem="imagenet")
    message = str(err.value)
    assert "\n" not in message and "resnet20" in message and "'imagenet'" in message and "stem" in message


# ---- the CIFAR stem of the ImageNet ResNets ----------------------------------------


def test_resnet18_cifar_stem_is_the_zoo_default():
    model = meta("resnet18", num_classes=10, stem="cifar")
    assert count(model) == 11_173_962
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.out_channels == 64
    assert isinstance(model.maxpool, nn.Identity)
    assert model.forward_features(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 512, 4, 4)


def test_imagenet_stem_reaches_7x7_at_224():
    model = meta("resnet18", stem="imagenet")
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert model.forward_features(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 512, 7, 7)


# ---- init, zero_init_residual, batchnorm, dropout -----------------------------------


def test_init_is_torchvisions():
    torch.manual_seed(0)
    model = resnet18(num_classes=10, stem="cifar")
    conv = model.layer4[1].conv2  # 512 * 3 * 3 fan_out, 2.4M weights
    assert abs(conv.weight.std().item() / (2.0 / (512 * 9)) ** 0.5 - 1) < 0.01
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)
    assert all(torch.all(m.bias == 0) for m in resnet20(batchnorm=False).modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("batchnorm", [True, False])
def test_zero_init_residual_makes_every_block_start_as_its_shortcut(batchnorm):
    torch.manual_seed(0)
    default = meta("resnet50", num_classes=10, stem="cifar", batchnorm=batchnorm)
    model = resnet50(num_classes=10, stem="cifar", batchnorm=batchnorm, zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    for block in blocks:
        zeroed = block.bn3.weight if batchnorm else block.conv3.weight
        assert torch.all(zeroed == 0)
        x = torch.randn(1, block.conv1.in_channels, 8, 8)
        with torch.no_grad():
            assert torch.equal(block(x), torch.relu(block.downsample(x)))
    assert all(torch.all(b.bn2.weight == 1) for b in resnet20(zero_init_residual=False).modules()
               if isinstance(b, BasicBlock))
    assert all(torch.all(b.bn2.weight == 0) for b in resnet20(zero_init_residual=True).modules()
               if isinstance(b, BasicBlock))
    assert count(default) == count(model)


def test_one_dropout_right_before_the_classifier():
    for model in (meta("resnet18"), meta("resnet20", dropout=0.3)):
        drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        assert len(drops) == 1 and list(model.children())[-2:] == [drops[0], model.fc]
    assert meta("resnet18").dropout.p == 0.0 and meta("resnet20", dropout=0.3).dropout.p == 0.3


@pytest.mark.parametrize("name, option, value", [("resnet18", "form", "v2"), ("resnet50", "form", "v2"),
                                                 ("resnet20", "shortcut", "C"),
                                                 ("resnet110", "shortcut_padding", "middle")])
def test_bad_family_options_raise_one_line(name, option, value):
    with pytest.raises(layers.ModelOptionError) as err:
        meta(name, **{option: value})
    assert "\n" not in str(err.value) and option in str(err.value) and repr(value) in str(err.value)


def test_the_imagenet_and_cifar_tables_have_their_own_options():
    with pytest.raises(TypeError):  # the option does not exist for this table's builder
        MODELS["resnet20"](form="torchvision")
    with pytest.raises(TypeError):
        MODELS["resnet18"](shortcut="A")


@pytest.mark.parametrize("activation", ["gelu", "prelu"])
def test_an_activation_after_each_bn_but_the_blocks_last_and_after_each_addition(activation):
    """resnet20: the stem's and two per basic block (9); a two-stage bottleneck net: three per block (3)."""
    act = type(layers.make_activation(activation))
    assert sum(isinstance(m, act) for m in meta("resnet20", activation=activation).modules()) == 1 + 2 * 9
    for form in ("paper", "torchvision"):
        assert sum(isinstance(m, act) for m in tiny(Bottleneck, form, activation=activation).modules()) == 1 + 3 * 3
