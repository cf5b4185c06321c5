"""The contract of the whole registry, one parametrized test per clause: every model takes every
switch (and refuses a bad value in one line), every family learns, every published parameter count
(the ``PARAMS`` table of each family's file) is what the model has, and every model's YAML states only
what differs from its builder. The family test files state only their papers (shapes, counts layer by
layer, torchvision parity).

Fast by default: every model is built on the meta device (structure and shapes; no memory, no
arithmetic) with a switch case and with each bad value; one model per builder takes every switch case
in every form, forward and backward, on the meta device; one model per family trains with real numbers.
``-m slow``: every model with real numbers in every case and form, and every model with every activation."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from models import _builder, create_model, list_models, model_family, model_options, model_reference
from models.layers import ACTIVATIONS, ModelOptionError, get_activation
from training.module import ImageClassifier

ROOT = Path(__file__).resolve().parents[2]
MODELS = list_models()
ACTIVATION_NAMES = sorted(ACTIVATIONS)
SWITCHES = [(bn, p) for bn in (True, False) for p in (0.0, 0.5)]
# One CIFAR-stem model per family, its smallest or most typical; a family not named here (a new one)
# is represented by its first model in alphabetical order.
PREFERRED = {"linear": "logreg", "vgg": "vgg11_bn", "resnet": "resnet20", "densenet": "densenet_bc_100",
             "mobilenet": "mobilenet_v2", "efficientnet": "efficientnet_b0"}
FAMILIES = sorted({model_family(name) for name in MODELS})
REPRESENTATIVES = {family: PREFERRED.get(family) or next(n for n in MODELS if model_family(n) == family)
                   for family in FAMILIES}
SAMPLE = sorted(REPRESENTATIVES.values())
# One model per builder function (a table's rows share it, each a functools.partial of it): the shortest
# name, e.g. resnet18 for the ImageNet table.
BUILDERS = {name: getattr(_builder(name), "func", _builder(name)) for name in MODELS}
PER_BUILDER = sorted({min((n for n in MODELS if BUILDERS[n] is b), key=lambda n: (len(n), n))
                      for b in BUILDERS.values()})
LINEAR = [name for name in MODELS if model_family(name) == "linear"]  # no activation, no batchnorm to switch
FIXED_GATES = {"efficientnet": {nn.Sigmoid}}  # non-linearities of the paper's structure that `activation` leaves alone


def forms(name: str) -> tuple:
    """The values of the model's ``form`` option (its file's ``FORMS``), or (None,) where it has none."""
    return (getattr(sys.modules[f"models.{model_family(name)}"], "FORMS", (None,)) if "form" in model_options(name)
            else (None,))


def build(name: str, device: str = "cpu", form: str | None = None, **options) -> nn.Module:
    """The model for 32x32 images and 10 classes, in its default form or ``form``."""
    with torch.device(device):
        return create_model(name, **{"num_classes": 10, "in_channels": 3, "stem": "cifar", **options,
                                     **({"form": form} if form else {})})


def switch_cases(name: str) -> list[dict]:
    """Batchnorm on/off x dropout 0/0.5, each with another activation, rotating with the model's place in
    the registry, so that every activation meets most families; linear models only with what they accept."""
    index = MODELS.index(name)
    cases = []
    for k, (batchnorm, dropout) in enumerate(SWITCHES):
        activation = ACTIVATION_NAMES[(index * len(SWITCHES) + k) % len(ACTIVATION_NAMES)]
        if name in LINEAR:
            activation, batchnorm = "identity", False
        cases.append(dict(activation=activation, batchnorm=batchnorm, dropout=dropout))
    return cases


def check_switches(model: nn.Module, name: str, activation: str, batchnorm: bool, dropout: float) -> None:
    modules = list(model.modules())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules) == batchnorm, f"batchnorm={batchnorm}"
    if not batchnorm:  # a BN's shift makes a conv bias redundant; without BN every conv has one
        assert all(m.bias is not None for m in modules
                   if isinstance(m, nn.Conv2d)), "batchnorm=False: a conv without bias"
    if name not in LINEAR:  # a linear model has no activation at all
        assert any(type(m) is get_activation(activation) for m in modules), f"no {activation} module in the model"
    rates = {m.p for m in modules if isinstance(m, nn.Dropout)}
    if dropout:
        assert dropout in rates, f"dropout={dropout} but Dropout rates are {rates}"
    else:
        assert not rates - {0.0}, f"dropout=0 but Dropout rates are {rates}"


def forward_backward(model: nn.Module, x: torch.Tensor, num_classes: int = 10) -> None:
    """Train mode: logits through the LightningModule's step (auxiliary heads' included), a backward pass
    that reaches every parameter; eval mode: plain logits. Finite numbers too, off the meta device."""
    torch.manual_seed(0)
    model.train()
    loss, logits, _ = ImageClassifier(model, num_classes=num_classes)._step(
        (x, torch.arange(len(x), device=x.device) % num_classes))
    assert logits.shape == (len(x), num_classes)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    # stochastic depth may drop a whole block in a train-mode step: its parameters then get no gradient
    every = not any(getattr(m, "p", 0) and type(m).__name__ == "StochasticDepth" for m in model.modules())
    grads = [p.grad for p in trainable if p.grad is not None]
    assert grads and (len(grads) == len(trainable)
                      or not every), f"{len(trainable) - len(grads)} parameters got no gradient"
    if not x.is_meta:
        assert all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (len(x), num_classes)  # whatever train mode returned


class Marker(nn.Module):
    """An activation no model uses by default: where it replaced every non-linearity, none of the others is left."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def check_activation_reaches_everything(model: nn.Module, name: str) -> None:
    left = {type(m) for m in model.modules()} & set(ACTIVATIONS.values())
    assert left - {nn.Identity} <= FIXED_GATES.get(model_family(name), set()), f"activation left {left} in place"


@pytest.mark.parametrize("name", MODELS)
def test_every_model_takes_the_switches_runs_and_refuses_bad_values_in_one_line(name):
    """On the meta device (structure and shapes; no memory, no arithmetic): a switch case, batchnorm on or
    off as the model's place in the registry says, gives what it says and 7 logits for a 1-channel image;
    a bad stem, dropout, batchnorm or activation is one line naming it."""
    case = switch_cases(name)[MODELS.index(name) % len(SWITCHES)]
    model = build(name, "meta", num_classes=7, in_channels=1, **case).eval()
    check_switches(model, name, **case)
    with torch.no_grad():
        assert model(torch.empty(2, 1, 32, 32, device="meta")).shape == (2, 7)
    for option, value in [("stem", "tiny"), ("dropout", 1.5), ("batchnorm", "maybe"), ("activation", "swoosh")]:
        with pytest.raises(ModelOptionError) as error:
            build(name, "meta", **{option: value})
        message = str(error.value)
        assert "\n" not in message and (option in message or repr(value) in message) and error.value.user_error


@pytest.mark.parametrize("name", PER_BUILDER)
def test_every_builder_takes_every_switch_in_every_form(name):
    """One model per builder (its table's other rows differ only in numbers), on the meta device: every
    switch case in the default form, one in each other form; forward and backward in train mode where
    batchnorm is off (the meta device computes train-mode batch norm slowly; the real-number test below
    has it on); an activation that reaches every non-linearity."""
    default, *others = forms(name)
    for form, cases in [(default, switch_cases(name)), *((form, switch_cases(name)[3:]) for form in others)]:
        for case in cases:
            model = build(name, "meta", form=form, **case)
            check_switches(model, name, **case)
            if not case["batchnorm"] and case["dropout"]:
                forward_backward(model, torch.empty(2, 3, 32, 32, device="meta"))
        if name not in LINEAR:
            check_activation_reaches_everything(build(name, "meta", form=form, activation=Marker), name)


@pytest.mark.parametrize("name", SAMPLE)
def test_each_family_trains_with_each_switch(name):
    """With real numbers, one model per family: batchnorm on with dropout, off without, each with another
    activation (together: every activation), finite gradients everywhere; ``-m slow``: every model, every
    case (below)."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for case in real_cases(name):
        model = build(name, **case)
        check_switches(model, name, **case)
        forward_backward(model, x)


def real_cases(name: str) -> list[dict]:
    """The families' two real-number cases, the activation rotating over the non-linear families."""
    cases = [switch_cases(name)[1], switch_cases(name)[2]]  # (batchnorm, dropout): (True, 0.5), (False, 0.0)
    nonlinear = [n for n in SAMPLE if n not in LINEAR]
    for k, case in enumerate(cases):
        if name in nonlinear:
            case["activation"] = ACTIVATION_NAMES[(nonlinear.index(name) * len(cases) + k) % len(ACTIVATION_NAMES)]
    return cases


def test_the_families_real_cases_give_every_activation_real_numbers():
    used = {case["activation"] for name in SAMPLE for case in real_cases(name)}
    assert used == set(ACTIVATION_NAMES), sorted(set(ACTIVATION_NAMES) - used)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_with_every_switch(name):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for form in forms(name):
        for case in switch_cases(name):
            model = build(name, form=form, **case)
            check_switches(model, name, **case)
            forward_backward(model, x)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("name", [n for n in MODELS if n not in LINEAR])
def test_full_cross_of_models_activations_and_switches(name, activation):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for form in forms(name):
        for batchnorm, dropout in SWITCHES:
            model = build(name, form=form, activation=activation, batchnorm=batchnorm, dropout=dropout)
            check_switches(model, name, activation, batchnorm, dropout)
            forward_backward(model, x)


def test_every_preferred_representative_is_a_model_of_its_family():
    assert {family: model_family(name) for family, name in PREFERRED.items()} == {f: f for f in PREFERRED}


@pytest.mark.parametrize("name", SAMPLE)
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
    for _ in range(20):  # within 20 steps the loss halves (a broken model's does not): stop when it has
        optimizer.zero_grad()
        loss = module._step((x, y))[0]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] < 0.5 * losses[0]:
            break
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", LINEAR)
def test_linear_models_refuse_switches_they_cannot_honour(name):
    with pytest.raises(ValueError, match=f"{name} is linear: it has no activation to choose .*'tanh'"):
        build(name, activation="tanh")
    with pytest.raises(ValueError, match=f"{name} is linear: it has no batchnorm"):
        build(name, batchnorm=True)


# ---- configs/model/: a YAML per model, stating only what differs from its builder -------------------------

BASE = yaml.safe_load((ROOT / "configs" / "_base" / "model.yaml").read_text())
# The base's run-wide switches that deliberately differ from the builders' (paper) defaults: train.py trains on
# CIFAR-sized images; `python -c "create_model('resnet18')"` is the paper's ImageNet network.
BASE_DIFFERS = {"stem": "cifar"}
FROM_THE_DATA = {"num_classes", "in_channels"}  # given by train.py from the data set, never a config key


def test_every_model_has_a_config_and_every_config_a_model():
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "configs" / "model").glob("*.yaml")}
    assert sorted(configs) == MODELS
    for stem, config in configs.items():
        assert config["name"] == stem
        assert config["defaults"][0] == "/_base/model@_here_"


def test_the_base_leaves_every_switch_to_the_builders_but_the_stem():
    assert {k: v for k, v in BASE.items() if v is not None and k != "_target_"} == BASE_DIFFERS
    assert BASE["_target_"] == "models.create_model"


@pytest.mark.parametrize("name", MODELS)
def test_every_model_yaml_lists_its_options_and_restates_no_default(name):
    """Every option of the builder is a key (so ``model.<option>=`` needs no ``+``, and a typo gets the valid
    keys), and a value is null (the builder's default), tied to the data (``${...}``) or one that differs from
    the builder's: defaults are stated once, in the builder."""
    config = yaml.safe_load((ROOT / "configs" / "model" / f"{name}.yaml").read_text())
    builder = inspect.signature(_builder(name)).parameters
    own = {k: v for k, v in config.items() if k not in ("defaults", "name")}
    assert sorted({*BASE, *own} - {"_target_"}) == sorted(set(builder) - FROM_THE_DATA)
    restated = {k: v for k, v in own.items()
                if v is not None and not str(v).startswith("${") and v == builder[k].default}
    assert not restated, f"{name}.yaml restates its builder's defaults: {restated}"


def test_null_means_the_builders_default():
    """A YAML's null reaches create_model as None, which leaves the option to the builder."""
    with torch.device("meta"):
        assert create_model("vgg11", dropout=None, batchnorm=None).classifier[2].p == 0.5  # the paper's dropout
        assert isinstance(create_model("vgg11_bn", batchnorm=None).features[1], nn.BatchNorm2d)  # the row's batchnorm


def test_a_model_says_every_option_it_was_built_with_so_runs_record_values_not_nulls():
    """Configs say null; what a run records (HPARAMS, the checkpoint's config, a weights card) is read
    from ``built_with``: the builder's default, a table row's own (vgg11_bn's batchnorm), or what was given."""
    with torch.device("meta"):
        assert (create_model("resnet20").built_with | {"num_classes": 10}
                == create_model("resnet20", num_classes=10).built_with)
        assert create_model("resnet20", dropout=None).built_with["dropout"] == 0.0
        assert (create_model("vgg11_bn").built_with["batchnorm"] is True
                and create_model("vgg11").built_with["batchnorm"] is False)
        assert (create_model("lenet5_paper").built_with["form"] == "paper"
                and create_model("lenet5").built_with["form"] == "modern")
        assert create_model("densenet161").built_with["growth_rate"] == 48
        assert create_model("efficientnet_b2").built_with["dropout"] == 0.3
        assert create_model("vgg11_bn", batchnorm=False).built_with["batchnorm"] is False


def test_unknown_names_and_options_get_one_line_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet999'; valid: .*lenet5") as error:
        create_model("resnet999")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"model 'lenet5' has no option colour; valid: .*activation"):
        create_model("lenet5", colour="red")


def test_a_count_published_for_a_model_its_file_does_not_have_is_refused_at_import(tmp_path, monkeypatch):
    import models

    (tmp_path / "stray.py").write_text("from models.layers import variants\n\n\ndef toy(*, num_classes=10):\n"
                                       "    pass\n\n\nMODELS = variants(toy)\nPARAMS = {'toy2': (1, 'a typo', {})}\n")
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "models.stray", raising=False)
    with pytest.raises(ImportError, match=r"models/stray.py's PARAMS names toy2, not in its MODELS"):
        models._discover()
    sys.modules.pop("models.stray", None)


# ---- published parameter counts: each family's PARAMS, checked here only ----------------------------------

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
