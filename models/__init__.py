"""The zoo: a name -> builder table, ``create_model`` and ``list_models``.

The table is the union of the ``MODELS`` tables of this folder's files
(``layers.variants``: a variant's name is written once, as its table's key or
its builder's name); adding a family is adding its file (and its configs/model/
YAML and its test). A file's ``PARAMS`` (published parameter counts) may name
only its own models.

Every builder takes ``num_classes``, ``in_channels``, ``activation``,
``batchnorm``, ``dropout`` and ``stem`` (plus options of its own family), so
one sweep can cross any model with any switch. The builder's keyword defaults
are the only statement of a model's defaults: an option given as None takes
the builder's default (configs say ``null``), as timm's ``create_model`` does.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable

from torch import nn

from . import weights as _weights
from .errors import ModelOptionError, WeightsError


def _discover() -> dict[str, Callable[..., nn.Module]]:
    """Every module of this folder with a ``MODELS`` table (name -> builder): a new family is
    one new file, with no import list to extend."""
    found: dict[str, Callable[..., nn.Module]] = {}
    for module in pkgutil.iter_modules(__path__):
        family = importlib.import_module(f"{__name__}.{module.name}")
        table = getattr(family, "MODELS", None) or {}
        for name, builder in table.items():
            if name in found:
                raise ImportError(f"model {name!r} is in the MODELS tables of both {_family_of(found[name])} "
                                  f"and {module.name}")
            found[name] = builder
        stray = sorted(set(getattr(family, "PARAMS", {})) - set(table))
        if stray:
            raise ImportError(f"models/{module.name}.py's PARAMS names {', '.join(stray)}, not in its MODELS")
    return found


def _family_of(builder: Callable[..., nn.Module]) -> str:
    return _module_of(builder).rsplit(".", 1)[-1]


def _module_of(builder: Callable[..., nn.Module]) -> str:
    """The module that defines a builder (a table's variants are ``functools.partial``s of its builder)."""
    return getattr(builder, "func", builder).__module__


_MODELS = _discover()


def list_models() -> list[str]:
    """Names accepted by ``create_model``, sorted."""
    return sorted(_MODELS)


def model_options(name: str) -> list[str]:
    """The keyword options the named model's builder accepts."""
    return list(inspect.signature(_builder(name)).parameters)


def model_family(name: str) -> str:
    """The family a model belongs to: the name of its file (``resnet18`` -> ``resnet``)."""
    return _family_of(_builder(name))


def model_paper(name: str) -> dict:
    """The ``PAPER`` of the model's file: ``{"title": ..., "year": ...}`` (empty where the file has none)."""
    return dict(getattr(sys.modules[_module_of(_builder(name))], "PAPER", {}))


def model_reference(name: str) -> dict | None:
    """The model's parameter count as published: ``{"params": ..., "source": ..., "options": {...}}`` from the
    ``PARAMS`` table of its file, ``options`` being those it is counted with; None where none is published."""
    row = getattr(sys.modules[_module_of(_builder(name))], "PARAMS", {}).get(name)
    return None if row is None else dict(zip(("params", "source", "options"), row))


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise ModelOptionError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    return _MODELS[name]


def create_model(name: str, weights: str | None = None, **options) -> nn.Module:
    """Build a zoo model by name, e.g. ``create_model("resnet18", num_classes=100)``.

    ``weights``: ``"cifar10"`` (the file shipped in ``weights/`` for this model),
    a path to a weights file with its card beside it, a community checkpoint
    (``models.weights.COMMUNITY``: akamaster's CIFAR ResNets), or ``"imagenet"``
    (torchvision's weights, for the models identical to torchvision's). The
    model is then built with the options the weights were trained with (given
    ``options`` take precedence), loaded, and returned in eval mode.

    An option given as None is left to the builder: its default.
    """
    builder = _builder(name)
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ModelOptionError(f"model {name!r} has no option {', '.join(unknown)}; valid: {', '.join(valid)}")
    options = {key: value for key, value in options.items() if value is not None}
    if weights is None:
        return _build(builder, options)
    if weights == "imagenet":
        state = _weights.imagenet_state_dict(name)  # first: a model torchvision has no weights for is named as such
        defaults = {"num_classes": 1000, "in_channels": 3, "stem": "imagenet", "form": "torchvision"}
        net = _build(builder, {**{k: v for k, v in defaults.items() if k in valid}, **options})
        _weights.load_into(net, state, f"torchvision's ImageNet weights for {name}",
                           f"model={name} with {options or 'the torchvision form'}")
        return net.eval()
    if _weights.is_community_file(weights):  # another project's checkpoint, recognised by its layout
        card, state = _weights.read_community(weights, name)
        needed = card["model"]["options"]
        clash = {k: v for k, v in options.items() if k in needed and v != needed[k]}
        if clash:
            key = next(iter(clash))
            raise WeightsError(f"weights={str(weights)!r} ({card['source']}) needs {key}={needed[key]!r}, "
                               f"got {key}={clash[key]!r}")
        net = _build(builder, {**needed, **options})
        _weights.load_into(net, state, card["file"], f"model={name} built with {options or 'the options it needs'}")
        _weights.announce(card)
        return net.eval()
    card_path = _weights.find_card(name, weights)
    card, state = _weights.load_state_dict(card_path)
    if card["model"].get("name") != name:
        raise WeightsError(f"weights={weights!r} ({card_path.name}) are for model "
                           f"{card['model'].get('name')!r}, not {name!r}")
    stored = card["model"].get("options", {})
    bad = sorted(set(stored) - set(valid))
    if bad:
        raise WeightsError(f"{card_path.name} names options that model {name!r} does not have: {', '.join(bad)}")
    net = _build(builder, {**stored, **options})
    _weights.load_into(net, state, card_path.with_name(card["file"]).name,
                       f"model={name} built with {options or 'its card options'}")
    return net.eval()


def _build(builder: Callable[..., nn.Module], options: dict) -> nn.Module:
    """The network, with ``built_with``: every option's value as built (a default None stays None where it
    follows another option: GoogLeNet's batchnorm follows its form), what a run records of its model."""
    given = {key: value for key, value in options.items() if value is not None}  # None: the default
    net = builder(**given)
    defaults = {key: p.default for key, p in inspect.signature(builder).parameters.items() if p.default is not p.empty}
    net.built_with = {**defaults, **given}
    return net
