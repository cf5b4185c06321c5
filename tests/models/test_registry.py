"""One test over the whole registry: every model takes every switch, and
every family learns, every published parameter count (the ``PARAMS`` table of
each family's file) is what the model has. Per-family details (shapes, counts
layer by layer, torchvision parity) live in the family's own test file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from models import create_model, list_models, model_family, model_reference
from models.layers import ACTIVATIONS, get_activation
from models.linear import KernelSVM, LinearClassifier
from training.module import ImageClassifier

ROOT = Path(__file__).resolve().parents[2]
MODELS = list_models()
ACTIVATION_NAMES = sorted(ACTIVATIONS)
SWITCHES = [(bn, p) for bn in (True, False) for p in (0.0, 0.5)]


def build(name: str, **switches) -> nn.Module:
    return create_model(name, num_classes=10, in_channels=3, stem="cifar", **switches)


def check_switches(model: nn.Module, activation: str, batchnorm: bool, dropout: float) -> None:
    modules = list(model.modules())
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules)
    assert has_bn == batchnorm, f"batchnorm={batchnorm} but BatchNorm modules present: {has_bn}"
    if activation != "identity" or not isinstance(model, (LinearClassifier, KernelSVM)):  # a linear model has none at all
        assert any(type(m) is get_activation(activation) for m in modules), f"no {activation} module in the model"
    rates = {m.p for m in modules if isinstance(m, nn.Dropout)}
    if dropout:
        assert dropout in rates, f"dropout={dropout} but Dropout rates are {rates}"
    else:
        assert not rates - {0.0}, f"dropout=0 but Dropout rates are {rates}"


def forward_backward(model: nn.Module) -> None:
    torch.manual_seed(0)
    model.train()
    module = ImageClassifier(model, num_classes=10)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    loss, logits, _ = module._step((x, y))
    assert logits.shape == (2, 10)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)  # eval mode: plain logits, whatever train mode returned


# One CIFAR-stem model per family, its smallest or most typical; a family not named here (a new one)
# is represented by its first model in alphabetical order.
PREFERRED = {"linear": "logreg", "vgg": "vgg11_bn", "resnet": "resnet20", "densenet": "densenet_bc_100", "mobilenet": "mobilenet_v2",
             "efficientnet": "efficientnet_b0"}
FAMILIES = sorted({model_family(name) for name in MODELS})
REPRESENTATIVES = {family: PREFERRED.get(family) or next(n for n in MODELS if model_family(n) == family)
                   for family in FAMILIES}
LINEAR = [name for name in MODELS if model_family(name) == "linear"]  # no activation, no batchnorm to switch


@pytest.mark.parametrize("name", MODELS)
def test_every_model_takes_the_switches(name):
    """Batchnorm on/off x dropout on/off for every model, each with another
    activation, rotating with the model so that every activation meets every
    family (the full cross of activations is the slow test below)."""
    index = MODELS.index(name)
    for k in range(len(SWITCHES)):
        batchnorm, dropout = SWITCHES[k]
        activation = ACTIVATION_NAMES[(index * len(SWITCHES) + k) % len(ACTIVATION_NAMES)]
        if name in LINEAR:
            activation, batchnorm = "identity", False
        model = build(name, activation=activation, batchnorm=batchnorm, dropout=dropout)
        check_switches(model, activation, batchnorm, dropout)
        forward_backward(model)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("name", MODELS)
def test_full_cross_of_models_activations_and_switches(name, activation):
    if name in LINEAR:
        pytest.skip("linear models have no activation or batchnorm to switch")
    for batchnorm, dropout in SWITCHES:
        model = build(name, activation=activation, batchnorm=batchnorm, dropout=dropout)
        check_switches(model, activation, batchnorm, dropout)
        forward_backward(model)


def test_every_preferred_representative_is_a_model_of_its_family():
    assert {family: model_family(name) for family, name in PREFERRED.items()} == {f: f for f in PREFERRED}


@pytest.mark.parametrize("name", sorted(REPRESENTATIVES.values()))
def test_each_family_drives_its_loss_down_on_a_fixed_batch(name):
    torch.manual_seed(0)
    # memorizing 4 images: dropout only slows it down. The paper's GoogLeNet has no
    # batchnorm: 22 layers deep, Adam at this lr overshoots without it.
    model = build(name, dropout=0.0, **({"batchnorm": True} if name == "googlenet" else {}))
    module = ImageClassifier(model, num_classes=10)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 5, 8])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = module._step((x, y))[0]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", LINEAR)
def test_linear_models_refuse_switches_they_cannot_honour(name):
    with pytest.raises(ValueError, match=f"{name} is linear: it has no activation to choose .*'tanh'"):
        build(name, activation="tanh")
    with pytest.raises(ValueError, match=f"{name} is linear: it has no batchnorm"):
        build(name, batchnorm=True)


def test_every_model_has_a_config_and_every_config_a_model():
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "configs" / "model").glob("*.yaml")}
    assert sorted(configs) == MODELS
    for stem, config in configs.items():
        assert config["name"] == stem
        assert config["defaults"][0] == "/_base/model@_here_"


# The base's run-wide switches that deliberately differ from the builders' (paper) defaults: train.py trains on
# CIFAR-sized images; `python -c "create_model('resnet18')"` is the paper's ImageNet network.
BASE_DIFFERS = {"stem": "cifar"}


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_yaml_agrees_with_its_builders_defaults(path):
    """Defaults live in the builder: a model YAML restates a default (as a knob to override) only with the
    builder's own value, or ties it to the data with an interpolation; the base only as BASE_DIFFERS says."""
    import inspect

    from models import _builder

    config = yaml.safe_load(path.read_text())
    base = yaml.safe_load((ROOT / "configs" / "_base" / "model.yaml").read_text())
    defaults = {name: p.default for name, p in inspect.signature(_builder(config["name"])).parameters.items()}
    own = {k: v for k, v in config.items() if k not in ("defaults", "name", "_target_")}
    inherited = {k: v for k, v in base.items() if k != "_target_" and k not in own}
    differ = {k: (v, defaults.get(k, "no such option")) for k, v in own.items()
              if v != defaults.get(k, object()) and not (isinstance(v, str) and v.startswith("${"))}
    differ.update({k: (v, defaults.get(k, "no such option")) for k, v in inherited.items()
                   if v != defaults.get(k, object()) and BASE_DIFFERS.get(k) != v})
    assert not differ, f"{path.name}: (yaml, builder) {differ}"


def test_unknown_names_and_options_get_one_line_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet999'; valid: .*lenet5") as error:
        create_model("resnet999")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"model 'lenet5' has no option colour; valid: .*activation"):
        create_model("lenet5", colour="red")
    with pytest.raises(ValueError, match=r"unknown activation 'swoosh'; valid: .*relu"):
        create_model("lenet5", activation="swoosh")
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got 1.5"):
        create_model("lenet5", dropout=1.5)


# Models with no published count: the linear baselines, LeNet-5's modern form (ours), and the compound-scaling
# builder (its phi=0 is efficientnet_b0, counted there).
UNPUBLISHED = {"linear_svm", "logreg", "ovr_logreg", "rff_svm", "lenet5", "efficientnet"}
PUBLISHED = [name for name in MODELS if model_reference(name)]


@pytest.mark.parametrize("name", PUBLISHED)
def test_every_published_parameter_count_is_the_models(name):
    """Built as its source counts it (on the meta device: no memory for VGG's 138M), the model has exactly the
    parameters its family's PARAMS table states; every table's count is checked here and nowhere else."""
    reference = model_reference(name)
    with torch.device("meta"):
        model = create_model(name, **reference["options"])
    assert sum(p.numel() for p in model.parameters()) == reference["params"], reference["source"]


def test_every_model_has_a_published_count_or_is_named_as_having_none():
    assert sorted(set(MODELS) - set(PUBLISHED)) == sorted(UNPUBLISHED)
