"""GoogLeNet: torchvision parity (its weights load by key), the paper's counts, the aux-head contract,
the forms' batch norm and dropout. The switches of every model: tests/models/test_registry.py."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from models import create_model
from models.googlenet import INCEPTION
from models.googlenet import googlenet as build
from models.layers import ModelOptionError


def googlenet(**options) -> nn.Module:
    """On the meta device: structure, counts and shapes, no memory and no arithmetic."""
    with torch.device("meta"):
        return build(**options)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The nine Inception modules by their Table 1 names."""
    return {name: getattr(model, f"inception{name}") for name in INCEPTION}


def aux_count(model: nn.Module) -> int:
    return sum(count(head) for head in (model.aux1, model.aux2) if head is not None)


def stem_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the stem hands to module 3a: the output of maxpool2."""
    seen = []
    handle = model.maxpool2.register_forward_hook(lambda m, i, out: seen.append(out))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen[0]


@pytest.fixture(scope="module", params=[False, True], ids=["no_aux", "aux"])
def pair(request):
    """(torchvision model, ours built by the registry with torchvision's state_dict
    loaded by key), both in eval mode."""
    torch.manual_seed(0)
    aux = request.param
    # transform_input=False is torchvision's default without weights; ours has no such step
    theirs = torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=True, transform_input=False)
    # torchvision's std-0.01 init drowns the input after 22 layers (the logits are
    # nearly the fc bias), so give the convs and BN layers values that carry signal
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
    ours = create_model("googlenet", form="torchvision", aux_logits=aux)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return aux, theirs.eval(), ours.eval()


def test_torchvision_parameter_count(pair):
    aux, theirs, ours = pair
    assert count(ours) == count(theirs)  # without aux heads, the published count: models/googlenet.py's PARAMS


def test_torchvision_state_dict_keys(pair):
    """Same keys in the same order (so loading by position works too), same shapes."""
    aux, theirs, ours = pair
    tv_state, our_state = theirs.state_dict(), ours.state_dict()
    assert list(our_state) == list(tv_state) and len(tv_state) == (364 if aux else 344)
    assert sum(k.startswith("aux") for k in our_state) == (2 * 10 if aux else 0)  # conv+bn(5)+fc1(2)+fc2(2), twice
    assert all(our_state[k].shape == v.shape for k, v in tv_state.items())


@pytest.mark.parametrize("aux", [False, True], ids=["no_aux", "aux"])
def test_torchvision_random_init_loads_by_key(aux):
    """torchvision's randomly initialised state_dict, as it comes, loads by key into
    the registry's torchvision form, and the logits are torchvision's bit for bit.
    (This init drowns the input, so the logits are nearly the fc bias: the tests on
    ``pair`` load weights that carry the input through, at several sizes.)"""
    torch.manual_seed(0)
    theirs = torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=True).eval()
    ours = create_model("googlenet", form="torchvision", aux_logits=aux)
    result = ours.load_state_dict(theirs.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    our_state = ours.state_dict()
    assert all(torch.equal(our_state[k], v) for k, v in theirs.state_dict().items())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), theirs(x))


@pytest.mark.parametrize("size", [224, 112, 64])
def test_torchvision_logits_eval(pair, size):
    _, theirs, ours = pair
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (2, 1000)
    assert (expected[0] - expected[1]).abs().max() > 0.01 * expected.abs().max()  # logits follow the input
    assert torch.equal(got, expected)


@pytest.mark.parametrize("pair", [False], indirect=True, ids=["no_aux"])
def test_torchvision_transform_input_is_inputs_in_minus_one_to_one(pair):
    """With its ImageNet weights torchvision sets transform_input=True: ImageNet-normalised
    images in, TF-slim's [-1, 1] scaling inside. Ours takes the [-1, 1] images directly."""
    _, theirs, ours = pair
    theirs = copy.deepcopy(theirs)
    theirs.transform_input = True
    pixels = torch.rand(2, 3, 64, 64)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        expected, got = theirs((pixels - mean) / std), ours(2 * pixels - 1)
    assert torch.allclose(got, expected, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("pair", [True], indirect=True, ids=["aux"])
def test_torchvision_logits_train_with_aux(pair):
    _, theirs, ours = pair
    theirs, ours = copy.deepcopy(theirs).train(), copy.deepcopy(ours).train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)  # same dropout masks: both run aux1, aux2, then the main dropout
    expected = theirs(x)
    torch.manual_seed(1)
    logits, (aux1, aux2) = ours(x)
    for got, want in ((logits, expected.logits), (aux1, expected.aux_logits1), (aux2, expected.aux_logits2)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("pair", [True], indirect=True, ids=["aux"])
def test_torchvision_aux_heads_on_14x14_maps(pair):
    """At 224x224 the heads see 14x14 maps, where adaptive and 5x5/3 pooling differ."""
    _, theirs, ours = pair
    for tv_head, our_head, channels in ((theirs.aux1, ours.aux1, 512), (theirs.aux2, ours.aux2, 528)):
        f = torch.randn(1, channels, 14, 14)
        with torch.no_grad():
            assert torch.equal(our_head(f), tv_head(f))


PAPER_TABLE_1 = {  # #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# Table 1's params column, in units of 1024 (its "K").
PAPER_TABLE_1_PARAMS_K = {
    "3a": 159, "3b": 380, "4a": 364, "4b": 437, "4c": 463, "4d": 580, "4e": 840, "5a": 1072, "5b": 1388
}


@pytest.fixture(scope="module")
def paper():
    return googlenet()  # paper form, ImageNet stem, 1000 classes, aux heads


def test_paper_table_and_parameter_count(paper):
    assert INCEPTION == PAPER_TABLE_1
    # count by hand from Table 1: weights and biases of every conv and linear
    total, cin = 3 * 64 * 49 + 64 + 64 * 64 + 64 + 64 * 192 * 9 + 192, 192
    for n1, n3r, n3, n5r, n5, npool in PAPER_TABLE_1.values():
        total += cin * (n1 + n3r + n5r + npool) + 9 * n3r * n3 + 25 * n5r * n5 + n1 + n3r + n3 + n5r + n5 + npool
        cin = n1 + n3 + n5 + npool
    total += 1024 * 1000 + 1000
    no_aux = count(paper) - aux_count(paper)
    assert no_aux == total == 6_998_552
    assert abs(no_aux - 6.8e6) / 6.8e6 < 0.03  # Table 1: about 6.8M
    assert count(paper) == 13_378_280
    aux_head = (512 * 128 + 128) + (2048 * 1024 + 1024) + (1024 * 1000 + 1000)
    assert count(paper.aux1) == aux_head and count(paper.aux2) == aux_head + 16 * 128  # on 4a, 4d
    for name, k in PAPER_TABLE_1_PARAMS_K.items():  # 4c (+7.5%) and 5a (-5%) are the table's outliers
        weights = sum(p.numel() for p in blocks(paper)[name].parameters() if p.dim() > 1)
        assert abs(weights / 1024 - k) / k < 0.08, name


def test_paper_structure(paper):
    modules = list(paper.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in modules)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in modules) == 2
    stem = (paper.conv1, paper.maxpool1, paper.lrn1, paper.conv2, paper.conv3, paper.lrn2, paper.maxpool2)
    assert [type(m).__name__ for m in stem] == [
        "BasicConv2d", "MaxPool2d", "LocalResponseNorm", "BasicConv2d", "BasicConv2d", "LocalResponseNorm", "MaxPool2d"
    ]
    assert all(block.branch3[1].conv.kernel_size == (5, 5) for block in blocks(paper).values())
    assert paper.dropout.p == 0.4
    for head in (paper.aux1, paper.aux2):
        assert isinstance(head.pool, nn.AvgPool2d) and head.pool.kernel_size == 5 and head.pool.stride == 3
        assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.7]
    assert paper.maxpool3.kernel_size == paper.maxpool4.kernel_size == 3  # torchvision: 2 before 5a


def test_paper_shapes_at_224(paper):
    x = torch.empty(1, 3, 224, 224, device="meta")
    assert stem_output(paper, x).shape == (1, 192, 28, 28)
    with torch.no_grad():
        paper.train()
        logits, aux = paper(x)
        paper.eval()
        assert paper(x).shape == (1, 1000)
    assert logits.shape == (1, 1000) and [a.shape for a in aux] == [(1, 1000), (1, 1000)]


def test_aux_contract_train_vs_eval():
    torch.manual_seed(0)
    model = build(num_classes=10, stem="cifar")
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 2
    logits, aux = out
    assert logits.shape == (2, 10) and isinstance(aux, list) and [a.shape for a in aux] == [(2, 10), (2, 10)]
    loss = nn.functional.cross_entropy(logits, y) + 0.3 * sum(nn.functional.cross_entropy(a, y) for a in aux)
    loss.backward()
    aux_params = [p for head in (model.aux1, model.aux2) for p in head.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in aux_params)
    model.zero_grad(set_to_none=True)
    model.eval()
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    out.sum().backward()  # the heads are not run at inference
    assert all(p.grad is None for p in aux_params)
    assert all(p.grad is not None for p in model.fc.parameters())
    no_aux = build(num_classes=10, stem="cifar", aux_logits=False).train()
    assert no_aux.aux1 is None and no_aux.aux2 is None and isinstance(no_aux(x), torch.Tensor)


@pytest.mark.parametrize("form", ["paper", "torchvision"])
def test_cifar_stem(form):
    model = googlenet(num_classes=10, stem="cifar", form=form)
    assert stem_output(model, torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 192, 16, 16)
    assert all(isinstance(m, nn.Identity) for m in (model.conv1, model.maxpool1, model.lrn1, model.conv2))
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == (1 if form == "paper" else 0)
    assert all(isinstance(h.pool, nn.AdaptiveAvgPool2d) for h in (model.aux1, model.aux2))
    expected = {"paper": (5_864_762, 10_214_990), "torchvision": (5_490_986, 9_841_470)}[form]
    assert (count(model) - aux_count(model), count(model)) == expected


def test_batchnorm_switch():
    convs = lambda m: [c for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    bns = lambda m: [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]  # noqa: E731
    tv = googlenet(num_classes=10, stem="cifar", form="torchvision")
    assert len(bns(tv)) == len(convs(tv)) == 1 + 9 * 6 + 2 and all(b.eps == 1e-3 for b in bns(tv))
    assert all(c.bias is None for c in convs(tv))
    tv_plain = googlenet(num_classes=10, stem="cifar", form="torchvision", batchnorm=False)
    assert not bns(tv_plain) and all(c.bias is not None for c in convs(tv_plain))
    assert all(b.branch3[1].conv.kernel_size == (3, 3) for b in blocks(tv_plain).values())
    assert tv_plain.maxpool4.kernel_size == 2
    paper_bn = googlenet(num_classes=10, stem="cifar", batchnorm=True)
    assert len(bns(paper_bn)) == len(convs(paper_bn)) and all(c.bias is None for c in convs(paper_bn))
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in paper_bn.modules()) == 1  # LRN stays
    assert tv.dropout.p == 0.2


def test_aux_dropout_option():
    rates = lambda m: sorted(d.p for d in m.modules() if isinstance(d, nn.Dropout))  # noqa: E731
    assert rates(googlenet(stem="cifar")) == [0.4, 0.7, 0.7]
    assert rates(googlenet(stem="cifar", form="torchvision")) == [0.2, 0.7, 0.7]
    assert rates(googlenet(stem="cifar", dropout=0.5)) == [0.5, 0.7, 0.7]  # the heads keep the paper's rate
    assert rates(googlenet(stem="cifar", dropout=0.0)) == [0.0, 0.0, 0.0]  # dropout=0: none anywhere
    assert rates(googlenet(stem="cifar", dropout=0.0, aux_dropout=0.3)) == [0.0, 0.3, 0.3]
    assert rates(googlenet(stem="cifar", aux_logits=False)) == [0.4]


@pytest.mark.parametrize("options, word", [({"form": "caffe"}, "form"), ({"aux_dropout": -0.1}, "dropout")])
def test_bad_options(options, word):
    with pytest.raises(ModelOptionError, match=word) as err:
        googlenet(**options)
    assert "\n" not in str(err.value)
