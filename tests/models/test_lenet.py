"""LeNet-5: the modern form's count, the paper form's counts, C3's table, subsampling, the rows'
defaults. The switches of every model: tests/models/test_registry.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from checks import assert_trains
from models.layers import LeCunTanh
from models.lenet import C3_TABLE, MODELS, LeNet5, LeNet5Paper, Subsampling, TableConv2d

lenet5, lenet5_paper = MODELS["lenet5"], MODELS["lenet5_paper"]

# Table I of the paper as printed: row = S2 map, column = C3 map 0..15.
TABLE_I = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_each_row_has_its_form_and_activation_and_takes_the_other():
    assert list(MODELS) == ["lenet5", "lenet5_paper"]
    modern, paper = lenet5(), lenet5_paper()
    assert isinstance(modern, LeNet5) and any(isinstance(m, nn.ReLU) for m in modern.modules())
    assert isinstance(paper, LeNet5Paper) and any(isinstance(m, LeCunTanh) for m in paper.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in [*modern.modules(), *paper.modules()])
    assert isinstance(lenet5(form="paper"), LeNet5Paper) and any(isinstance(m, nn.ReLU)
                                                                 for m in lenet5(form="paper").modules())
    assert isinstance(lenet5_paper(form="modern"), LeNet5)


def test_modern_count_unchanged():
    model = lenet5()
    assert isinstance(model, LeNet5)
    assert count(model) == 61_706
    assert count(lenet5(form="modern", num_classes=10, in_channels=1)) == 61_706


def test_paper_counts():
    model = lenet5_paper()
    assert isinstance(model, LeNet5Paper)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, Subsampling, TableConv2d))]
    per_layer = [count(m) for m in layers]
    # C1, S2, C3, S4, C5, F6, output
    assert per_layer == [156, 12, 1_516, 32, 48_120, 10_164, 850]
    assert sum(per_layer[:6]) == 60_000  # the paper's "60,000 trainable parameters"
    assert count(model) == sum(per_layer)  # the published count: models/lenet.py's PARAMS
    assert isinstance(lenet5(form="paper"), LeNet5Paper)


def test_paper_shapes_and_squashing():
    model = lenet5_paper(num_classes=7, in_channels=3).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.features(x).shape == (2, 120, 1, 1)  # C5: 5x5 conv over the 5x5 S4 maps
    assert model(x).shape == (2, 7)
    assert sum(isinstance(m, LeCunTanh) for m in model.modules()) == 6  # C1, S2, C3, S4, C5, F6
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, nn.ReLU) for m in lenet5(form="paper").modules()) == 6  # lenet5's default
    assert lenet5_paper(image_size=40)(torch.randn(1, 1, 40, 40)).shape == (1, 10)


def test_c3_table_is_table_one():
    rows = TABLE_I.split()
    printed = tuple(tuple(s2 for s2 in range(6) if rows[s2][c3] == "X") for c3 in range(16))
    assert tuple(tuple(sorted(maps)) for maps in C3_TABLE) == printed
    assert [len(maps) for maps in C3_TABLE] == [3] * 6 + [4] * 9 + [6]
    assert sum(len(maps) for maps in C3_TABLE) == 60


def test_c3_connection_table_masks():
    torch.manual_seed(0)
    c3 = next(m for m in lenet5_paper().modules() if isinstance(m, TableConv2d))
    x = torch.randn(1, 6, 14, 14)
    with torch.no_grad():
        y = c3(x)
        for s2 in range(6):
            x2 = x.clone()
            x2[:, s2] += torch.randn(14, 14)
            y2 = c3(x2)
            for c3_map, seen in enumerate(C3_TABLE):
                same = torch.allclose(y[:, c3_map], y2[:, c3_map])
                assert same == (s2 not in seen), (c3_map, s2)


def test_c3_gradient_reaches_only_connected_kernels():
    c3 = TableConv2d(C3_TABLE, 6, 5)
    c3(torch.randn(2, 6, 14, 14)).sum().backward()
    assert c3.weight.grad.shape == (60, 5, 5)
    dense = c3.dense_weight()
    assert (dense != 0).any(dim=(2, 3)).sum() == 60  # zero kernels where Table I has no X


def test_trainable_subsampling():
    s = Subsampling(2)
    with torch.no_grad():
        s.weight.copy_(torch.tensor([2.0, -1.0]))
        s.bias.copy_(torch.tensor([0.5, 1.0]))
    x = torch.arange(32.0).view(1, 2, 4, 4)
    y = s(x)
    assert y.shape == (1, 2, 2, 2)
    assert y[0, 0, 0, 0].item() == pytest.approx(2.0 * (0 + 1 + 4 + 5) + 0.5)
    assert y[0, 1, 1, 1].item() == pytest.approx(-1.0 * (26 + 27 + 30 + 31) + 1.0)


def test_paper_init():
    torch.manual_seed(0)
    model = lenet5_paper()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = 2.4 / m.weight[0].numel()
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.8 * bound
            assert (m.bias == 0).all()
    c3 = next(m for m in model.modules() if isinstance(m, TableConv2d))
    w = c3.weight.abs()  # kernels in table order: 18 of 3-input maps, 36 of 4-input maps, 6 of the 6-input map
    assert 2.4 / 100 < w[:18].max() <= 2.4 / 75
    assert 2.4 / 150 < w[18:54].max() <= 2.4 / 100
    assert w[54:].max() <= 2.4 / 150


def test_batchnorm_switch():
    for form in ("modern", "paper"):
        assert not any(isinstance(m, nn.BatchNorm2d) for m in lenet5(form=form).modules())
    on = lenet5_paper(batchnorm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in on.modules()) == 3  # after C1, C3, C5
    assert all(m.bias is None for m in on.modules() if isinstance(m, (nn.Conv2d, TableConv2d)))


def test_errors():
    for bad in ({"form": "torchvision"}, {"stem": "imagenet"}, {"image_size": 28}, {"downsample": "stride"}):
        with pytest.raises(ValueError):
            lenet5_paper(**bad)
    lenet5(image_size=28)  # the modern form still takes 28x28


def test_paper_form_trains_with_its_own_layers():
    """Real numbers through C3's table and the trainable subsampling (the registry's real-number test runs
    the modern form), with batch norm and dropout on."""
    assert_trains(lenet5_paper(num_classes=10, in_channels=3, batchnorm=True, dropout=0.5))
