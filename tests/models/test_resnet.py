"""ResNet: torchvision parity, the CIFAR ResNets' exact counts, option A
shortcuts, where the bottleneck's stride sits per form, stems, init, the
switch contract."""

import pytest
import torch
from checks import assert_same_logits, assert_trains
import torchvision
from torch import nn

from models import layers
from models.resnet import MODELS, BasicBlock, Bottleneck, PadShortcut, ResNet, resnet18, resnet20, resnet50

IMAGENET_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR_NAMES = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- ImageNet ResNets against torchvision -------------------------------------


@pytest.fixture(scope="module", params=IMAGENET_NAMES)
def pair(request):
    """(name, ours in torchvision form, torchvision's), built once per name."""
    torch.manual_seed(0)
    name = request.param
    ours = MODELS[name](num_classes=1000, stem="imagenet", form="torchvision").eval()
    theirs = getattr(torchvision.models, name)(num_classes=1000).eval()
    return name, ours, theirs


def test_param_count_is_torchvisions(pair):
    name, ours, theirs = pair
    assert count(ours) == count(theirs)  # and the published count: models/resnet.py's PARAMS


def test_state_dict_has_torchvisions_keys_and_shapes(pair):
    _, ours, theirs = pair
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)  # same names: torchvision checkpoints load as they are
    assert [v.shape for v in a.values()] == [v.shape for v in b.values()]


def test_same_logits_after_copying_weights(pair):
    _, ours, theirs = pair
    assert_same_logits(ours, theirs)


# ---- form: where the bottleneck's stride sits -----------------------------------


def strides(model: nn.Module) -> dict[str, tuple]:
    return {name: m.stride for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def test_forms_differ_only_in_the_bottleneck_stride():
    paper, tv = resnet50(form="paper"), resnet50(form="torchvision")
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


@pytest.mark.parametrize("name, same", [("resnet18", True), ("resnet50", False)])
def test_forms_give_same_logits_only_for_basic_blocks(name, same):
    torch.manual_seed(0)
    paper = MODELS[name](num_classes=10, stem="cifar", form="paper").eval()
    tv = MODELS[name](num_classes=10, stem="cifar", form="torchvision").eval()
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
    model = MODELS[name]()  # defaults: 10 classes, stem cifar, option A
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
    shortcut = PadShortcut(16, 32, stride=2)
    assert count(shortcut) == 0 and not list(shortcut.buffers())
    x = torch.randn(2, 16, 32, 32)
    out = shortcut(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])  # identity, subsampled
    assert torch.equal(out[:, 16:], torch.zeros(2, 16, 16, 16))  # the extra channels are zero
    assert PadShortcut(3, 5, stride=1)(torch.ones(1, 3, 7, 7)).sum() == 3 * 49  # odd maps: ceil(7/1)
    assert PadShortcut(4, 4, stride=2)(torch.ones(1, 4, 7, 7)).shape == (1, 4, 4, 4)  # as a 3x3/2 conv


def test_shortcut_options_in_the_cifar_resnets():
    a, b = resnet20(shortcut="A"), resnet20(shortcut="B")
    pads = [m for m in a.modules() if isinstance(m, PadShortcut)]
    assert len(pads) == 2 and [(p.extra, p.stride) for p in pads] == [(16, 2), (32, 2)]
    projections = [m for m in b.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [(p.in_channels, p.out_channels, p.stride) for p in projections] == [(16, 32, (2, 2)), (32, 64, (2, 2))]
    assert count(b) - count(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64) == 2_752  # conv + BN gamma, beta
    block = BasicBlock(16, 32, 2, "A").eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(block.bn2(block.conv2(block.act1(block.bn1(block.conv1(x)))))
                                                   + block.downsample(x)))


def test_cifar_resnets_refuse_the_imagenet_stem_in_one_line():
    with pytest.raises(ValueError) as err:
        resnet20(stem="imagenet")
    message = str(err.value)
    assert "\n" not in message and "resnet20" in message and "'imagenet'" in message and "stem" in message


# ---- the CIFAR stem of the ImageNet ResNets ----------------------------------------


def test_resnet18_cifar_stem_is_the_zoo_default():
    model = resnet18(num_classes=10, stem="cifar").eval()
    assert count(model) == 11_173_962
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.out_channels == 64
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)
    out = resnet18(num_classes=7, in_channels=1, stem="cifar").eval()(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7)


def test_imagenet_stem_reaches_7x7_at_224():
    model = resnet18(stem="imagenet").eval()
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 512, 7, 7)


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
    default = resnet50(num_classes=10, stem="cifar", batchnorm=batchnorm)
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


def test_batchnorm_off_leaves_no_batchnorm_and_gives_biases():
    for name in ["resnet18", "resnet50", "resnet20"]:
        options = {"shortcut": "B"} if name in CIFAR_NAMES else {}
        off = MODELS[name](num_classes=10, stem="cifar", batchnorm=False, **options)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in off.modules())
        assert all(m.bias is not None for m in off.modules() if isinstance(m, nn.Conv2d))
        on = MODELS[name](num_classes=10, stem="cifar", **options)
        assert all(m.bias is None for m in on.modules() if isinstance(m, nn.Conv2d))


def test_one_dropout_right_before_the_classifier():
    for model in (resnet18(), resnet20(dropout=0.3)):
        drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        assert len(drops) == 1 and list(model.children())[-2:] == [drops[0], model.fc]
    assert resnet18().dropout.p == 0.0 and resnet20(dropout=0.3).dropout.p == 0.3


@pytest.mark.parametrize("option, value", [("stem", "tiny"), ("dropout", 1.0), ("activation", "nope"),
                                           ("form", "v2"), ("shortcut", "C")])
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20", "resnet110"])
def test_bad_options_raise_one_line(name, option, value):
    if (option == "form" and name in CIFAR_NAMES) or (option == "shortcut" and name in IMAGENET_NAMES):
        with pytest.raises(TypeError):  # the option does not exist for this builder
            MODELS[name](**{option: value})
        return
    with pytest.raises(ValueError) as err:
        MODELS[name](**{option: value})
    assert "\n" not in str(err.value) and (option in str(err.value) or repr(value) in str(err.value))


# ---- the contract: every switch on a CIFAR batch ------------------------------------


@pytest.mark.parametrize("activation", sorted(layers.ACTIVATIONS))
def test_every_switch_on_both_blocks(activation):
    """resnet20 (basic blocks, option A) and a two-stage bottleneck ResNet with
    both forms: every activation, batchnorm on and off, dropout 0 and 0.5."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    act_type = type(layers.make_activation(activation))
    for batchnorm in (True, False):
        for dropout in (0.0, 0.5):
            model = resnet20(activation=activation, batchnorm=batchnorm, dropout=dropout)
            if activation != "identity":  # Identity also stands in for the max-pool and shortcuts
                assert sum(isinstance(m, act_type) for m in model.modules()) == 1 + 2 * 9
            assert_trains(model, x)
            for form in ("paper", "torchvision"):
                tiny = ResNet(Bottleneck, (1, 2), (8, 16), num_classes=10, activation=activation,
                              batchnorm=batchnorm, dropout=dropout, stem="cifar", form=form)
                if activation != "identity":
                    assert sum(isinstance(m, act_type) for m in tiny.modules()) == 1 + 3 * 3
                assert_trains(tiny, x)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", *CIFAR_NAMES,
                                  *(pytest.param(n, marks=pytest.mark.slow) for n in ("resnet101", "resnet152"))])
def test_every_model_trains_on_a_cifar_batch(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    assert_trains(MODELS[name](num_classes=10, stem="cifar", activation="gelu", batchnorm=False, dropout=0.5), x)


@pytest.mark.slow
@pytest.mark.parametrize("activation", sorted(layers.ACTIVATIONS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_switch_on_every_model(name, activation):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    for batchnorm in (True, False):
        for dropout in (0.0, 0.5):
            assert_trains(MODELS[name](num_classes=10, stem="cifar", activation=activation,
                                          batchnorm=batchnorm, dropout=dropout), x)
