"""Layer-by-layer introspection: every number it reports, checked against an
independent source (the parameters themselves, forward hooks, torch's FLOP
counter, torch's own output sizes, and the gradient for the receptive field)."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from analysis.introspection import (
    FeatureMapVanishes,
    Window,
    count_parameters_and_macs,
    render,
    smallest_input_size,
    summarize,
)
from empirical import empirical_receptive_field
from models import create_model, list_models


def build(name: str, size: int = 32, **options) -> nn.Module:
    if name.startswith(("lenet5", "logreg", "ovr_logreg", "linear_svm", "rff_svm")):
        options.setdefault("image_size", size)  # their classifier is sized for the input
    return create_model(name, num_classes=10, in_channels=3, stem=options.pop("stem", "cifar"), **options)


def hooked_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple]]:
    """(leaf name, output shape) of every leaf call, seen by plain forward hooks."""
    seen = []
    handles = [m.register_forward_hook(lambda m, a, out, n=n: seen.append((n, tuple(out.shape))))
               for n, m in model.named_modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("name", list_models())
def test_every_number_of_every_zoo_model_matches_an_independent_count(name):
    model = build(name)
    modules = dict(model.named_modules())
    rows, totals = summarize(model, (3, 32, 32))

    # parameters: the rows add up to the model's own count, and the textbook formula holds
    assert sum(r.params for r in rows) == totals.params == sum(p.numel() for p in model.parameters())
    for row in rows:
        module = modules.get(row.name)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert row.formula_params == sum(p.numel() for p in module.parameters()), row

    # shapes: exactly what forward hooks see, call by call
    x = torch.rand(1, 3, 32, 32)
    assert [(r.name, r.output_shape) for r in rows if r.ran] == hooked_shapes(model, x)

    # MACs: per layer, the formulas; in total, torch's FLOP counter (a MAC is two FLOPs)
    for row in rows:
        module = modules.get(row.name)
        if row.ran and isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            assert row.macs == torch.Size(row.output_shape).numel() * module.in_channels // module.groups * kh * kw
        elif row.ran and isinstance(module, nn.Linear):
            assert row.macs == torch.Size(row.output_shape[:-1]).numel() * module.in_features * module.out_features
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    reference = counter.get_total_flops() / 2
    assert abs(sum(r.macs for r in rows) - reference) <= 0.01 * reference
    assert totals.macs == reference

    # (W - F + 2P)/S + 1 is the size torch produced, for every convolution and pooling layer
    windows = [r for r in rows if r.formula_size is not None]
    assert windows or not any(isinstance(m, nn.Conv2d) for m in modules.values())
    for row in windows:
        assert row.formula_size == row.output_shape[-2:], row


def test_output_size_formula_agrees_with_torch_on_random_windows():
    rng = random.Random(0)
    for _ in range(300):
        k, s, d = rng.randint(1, 7), rng.randint(1, 4), rng.randint(1, 3)
        p, size, ceil = rng.randint(0, k // 2), rng.randint(1, 40), rng.random() < 0.5
        x = torch.zeros(1, 1, size, size)
        conv, pool = Window("conv", (k, k), (s, s), (p, p), (d, d)), Window("max_pool", (k, k), (s, s),
                                                                            (p, p), (d, d), ceil)
        try:
            expected = tuple(nn.functional.conv2d(x, torch.zeros(1, 1, k, k), stride=s, padding=p,
                                                  dilation=d).shape[-2:])
        except RuntimeError:
            expected = None
        assert (conv.output_size((size, size)) if min(conv.output_size((size, size))) > 0 else None) == expected
        try:
            expected = tuple(nn.functional.max_pool2d(x, k, s, p, d, ceil_mode=ceil).shape[-2:])
        except RuntimeError:
            expected = None
        assert (pool.output_size((size, size)) if min(pool.output_size((size, size))) > 0 else None) == expected


# --- receptive field ----------------------------------------------------------------------------
# Known values, by the recursion r' = r + (k-1) j: LeNet-5 conv5-pool2-conv5-pool2 = 16; VGG-16's
# conv5_3 / pool5 = 212 and AlexNet's pool5 = 195 (Araujo et al., Distill 2019, table of
# receptive fields). ResNet-18 with the CIFAR stem: 1 + 2 (3x3 stem) + 4*2 + 4*2*2 + 4*2*4 + 4*2*8 = 109.
@pytest.mark.parametrize("name, stem, size, rf", [
    ("lenet5", "cifar", 32, 16), ("vgg11", "cifar", 32, 150), ("vgg16", "cifar", 32, 212),
    ("resnet18", "cifar", 32, 109), ("alexnet", "imagenet", 224, 195),
])
def test_receptive_field_of_the_last_map_is_the_known_value(name, stem, size, rf):
    _, totals = summarize(build(name, size, stem=stem), (3, size, size))
    assert totals.last_map_rf == (rf, rf)


def test_a_residual_block_sees_what_its_widest_branch_sees_and_the_shortcut_keeps_the_jump():
    rows = {r.name: r for r in summarize(build("resnet18"), (3, 32, 32))[0]}
    main, shortcut, out = rows["layer2.0.bn2"], rows["layer2.0.downsample.1"], rows["layer2.0.act_out"]
    assert (main.rf, shortcut.rf, out.rf) == ((17, 17), (11, 11), (17, 17))
    assert main.jump == shortcut.jump == out.jump == (2, 2)
    # option A's strided slice is a 1x1 window of stride 2
    rows = {r.name: r for r in summarize(build("resnet20"), (3, 32, 32))[0]}
    assert rows["layer2.0.downsample"].jump == (2, 2) and rows["layer2.0.downsample"].rf == (15, 15)


def test_a_squeeze_excitation_gate_does_not_make_the_feature_map_global():
    """The gate (global pool -> 1x1 convs -> sigmoid) is global itself, but scaling the
    channels of a map by it leaves that map's receptive field as its convolutions made it."""
    rows, totals = summarize(build("efficientnet_b0"), (3, 32, 32))
    gates = [r for r in rows if r.name.endswith(".avgpool") and ".block." in r.name]
    maps = [r for r in rows if r.ran and len(r.output_shape) == 4 and r.output_shape[-1] > 1]
    assert gates and all(r.rf_global for r in gates)
    assert maps and not any(r.rf_global for r in maps)
    assert totals.last_map == "features.8.2" and rows[-1].rf_global


def check_against_gradient(model: nn.Module, size: int, layer: str, start, rf, jump) -> tuple:
    """Empirical field of the central unit of ``layer`` == the analytic one clipped to the image."""
    found = empirical_receptive_field(model, (3, size, size), layer)
    expected = []
    for a in (0, 1):
        lo = start[a] + found.unit[a] * jump[a]
        expected.append((max(lo, 0), min(lo + rf[a] - 1, size - 1)))
    assert (found.rows, found.cols) == tuple(expected), (layer, found)
    assert found.pixels == (found.rows[1] - found.rows[0] + 1) * (found.cols[1] - found.cols[0] + 1)
    return found


@pytest.mark.parametrize("name", ["lenet5", "vgg11", "resnet18"])
@pytest.mark.parametrize("size", [32, 64])
def test_analytic_receptive_field_is_the_set_of_pixels_with_a_gradient(name, size):
    """Like with like: the empirical field is clipped by the image border, so the analytic
    interval of the same (central) unit is clipped too. The last spatial map of VGG and
    ResNet sees past the border at these sizes; the deepest map whose central unit fits
    inside the image checks the unclipped field as well."""
    model = build(name, size)
    rows, totals = summarize(model, (3, size, size))
    check_against_gradient(model, size, totals.last_map, totals.last_map_start, totals.last_map_rf,
                           totals.last_map_jump)
    inside = []
    for row in rows:
        if row.ran and row.rf and not row.rf_global and len(row.output_shape) == 4:
            unit = (row.output_shape[2] // 2, row.output_shape[3] // 2)
            (r0, r1), (c0, c1) = row.rf_interval(unit, (size, size))
            if (r1 - r0 + 1, c1 - c0 + 1) == row.rf:  # nothing clipped
                inside.append(row)
    deepest = inside[-1]
    found = check_against_gradient(model, size, deepest.name, deepest.rf_start, deepest.rf, deepest.jump)
    assert found.pixels == deepest.rf[0] * deepest.rf[1] > 1


def test_inception_concatenation_sees_the_union_of_its_branches():
    googlenet = build("googlenet")
    # the CIFAR stem: conv1, conv2 are identities
    stem = nn.Sequential(googlenet.conv3, googlenet.lrn2, googlenet.maxpool2)
    model = nn.Sequential(stem, googlenet.inception3a)  # stem, then one Inception module
    rows, totals = summarize(model, (3, 32, 32))
    branches = {r.name.split(".")[1]: r.rf[0] for r in rows if r.name.startswith("1.branch")}
    assert branches == {"branch1": 5, "branch2": 9, "branch3": 13, "branch4": 9}  # 1x1 | 3x3 | 5x5 | pool
    assert totals.last_map == "1" and totals.last_map_rf == (13, 13) and totals.last_map_jump == (2, 2)
    check_against_gradient(model, 32, "1", totals.last_map_start, totals.last_map_rf, totals.last_map_jump)


# --- inputs too small, and the numbers for train.py ---------------------------------------------
def test_an_input_too_small_names_the_layer_where_the_map_vanishes_and_the_smallest_size():
    model = build("vgg11")
    with pytest.raises(FeatureMapVanishes) as caught:
        summarize(model, (3, 8, 8))
    error = caught.value
    assert (error.layer, error.kind, error.size, error.out) == ("features.15", "MaxPool2d", (1, 1), (0, 0))
    assert error.describe("vgg11", 32) == ("input 8x8 is too small for vgg11: the feature map vanishes at "
                                           "features.15 (MaxPool2d: 1x1 -> 0x0); use input_size >= 32")
    assert smallest_input_size(model, 3, 8) == 32
    summarize(model, (3, 32, 32))
    with pytest.raises(FeatureMapVanishes):
        summarize(model, (3, 31, 31))


def test_count_parameters_and_macs_matches_the_summary_per_image_and_keeps_the_mode():
    model = build("resnet20").train()
    _, totals = summarize(model, (3, 32, 32))
    # MACs by hand: stem 16*27*32^2; stage 1: 6 * 16*144*32^2; stage 2: 32*144*16^2 + 5 * 32*288*16^2;
    # stage 3: 64*288*8^2 + 5 * 64*576*8^2; classifier 64*10 (option A shortcuts multiply nothing)
    by_hand = 442_368 + 14_155_776 + 1_179_648 + 11_796_480 + 1_179_648 + 11_796_480 + 640
    assert count_parameters_and_macs(model, (3, 32, 32)) == (totals.params, totals.macs) == (269_722, by_hand)
    assert count_parameters_and_macs(model, (4, 3, 32, 32)) == (totals.params, totals.macs)
    assert model.training


def test_render_gives_every_format_with_one_line_per_layer_and_the_totals():
    rows, totals = summarize(build("lenet5"), (3, 32, 32))
    table = render(rows, totals, "table", "lenet5").splitlines()
    assert len(table) == 2 + len(rows) + 1 + 2 and "62,006 parameters" in table[-2]
    assert render(rows, totals, "markdown").splitlines()[1].startswith("|---|")
    with pytest.raises(ValueError, match="format must be one of table, csv, json, markdown"):
        render(rows, totals, "xml")
