"""Checks of configured values that no class of ours receives, run first in each entry point's task
function (``check_run``), before torch is imported.

A rule lives where the value is used (issue 23): the data modules (``data.*``), the model builders
(``model.*``: "dropout must be ..." is named ``model.dropout`` by ``cli.commandline.instantiate_part``), the
losses (``loss.*``), ``ImageClassifier`` (``optimizer.*``, beyond what torch.optim checks itself),
``WeightPenalty`` and ``PerformanceSwitches`` check their own arguments. The rules here are for the keys
left: ``seed``, ``test``, ``visualize``, ``force``, ``optimized_metric``, ``trainer.*`` and ``callbacks.*``.
Each names a config key, what it must be, and a predicate; a value that breaks one gets one line naming
the key, the value and what would be valid. Numbers must be finite. Keys absent from the composed config
(a group without them, another entry point's) are skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from core.errors import UserError, nearest

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# what train.py can return to a sweeper: validation and training metrics (test is never a selection criterion)
OPTIMIZED = ("val/acc_best", "val/acc", "val/loss", "train/loss", "train/acc", "time_to_target_s")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true",  # named in the message
              "32", 32, "64", 64, "16", 16, "bf16")  # Lightning's older spellings, accepted


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _devices(value: Any) -> bool:
    if value == "auto" or (_integer(value) and (value >= 1 or value == -1)):
        return True
    if isinstance(value, str):
        return re.fullmatch(r"\d+(,\d+)*,?", value) is not None
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_integer(v) and v >= 0 for v in value)


def _batches(value: Any) -> bool:  # limit_*_batches: a count, or a fraction of the epoch
    return value is None or (_integer(value) and value >= 0) or (_number(value) and 0 <= value <= 1)


def _some_batches(value: Any) -> bool:  # limit_train_batches: 0 would train nothing and still "succeed"
    return (value is None or (_integer(value) and value >= 1)
            or (_number(value) and not _integer(value) and 0 < value <= 1))


RULES: list[tuple[str, str, Callable[[Any], bool]]] = [
    ("seed", "an integer", _integer),
    ("trainer.max_epochs", "an integer >= 1", lambda v: _integer(v) and v >= 1),
    ("trainer.min_epochs", "null or an integer >= 0", lambda v: v is None or (_integer(v) and v >= 0)),
    ("trainer.accelerator", f"one of {', '.join(ACCELERATORS)}", lambda v: v in ACCELERATORS),
    ("trainer.devices", "an integer >= 1, -1 (all), 'auto' or a list of device indices", _devices),
    ("trainer.precision", f"one of {', '.join(map(str, PRECISIONS[:7]))}", lambda v: v in PRECISIONS),
    ("trainer.deterministic", "true or false", lambda v: isinstance(v, bool) or v == "warn"),
    ("trainer.gradient_clip_val", "null or a number >= 0", lambda v: v is None or (_number(v) and v >= 0)),
    ("trainer.check_val_every_n_epoch", "null or an integer >= 1", lambda v: v is None or (_integer(v) and v >= 1)),
    ("trainer.log_every_n_steps", "an integer >= 1", lambda v: _integer(v) and v >= 1),
    ("trainer.limit_train_batches", "null, an integer >= 1 or a fraction in (0, 1] (0 trains nothing)", _some_batches),
    ("trainer.limit_val_batches", "null, an integer >= 0 or a fraction in [0, 1]", _batches),
    ("trainer.limit_test_batches", "null, an integer >= 0 or a fraction in [0, 1]", _batches),
    ("callbacks.last_checkpoint.every_n_train_steps", "null or an integer >= 1",
     lambda v: v is None or (_integer(v) and v >= 1)),
    ("callbacks.early_stopping.patience", "an integer >= 0", lambda v: _integer(v) and v >= 0),
    ("test", "true or false", lambda v: isinstance(v, bool)),
    ("visualize", "true or false", lambda v: isinstance(v, bool)),
    ("force", "true or false", lambda v: isinstance(v, bool)),
    ("optimized_metric", f"one of {', '.join(OPTIMIZED)}", lambda v: v in OPTIMIZED),
]

_ABSENT = object()


def check_config(cfg: DictConfig) -> None:
    """Raise UserError (one line) for the first configured value that breaks a rule."""
    for key, valid, ok in RULES:
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        except OmegaConfBaseException as error:  # an interpolation that does not resolve: ${nope}
            raise UserError(f"{key} does not resolve: {str(error).splitlines()[0]}") from None
        if value is _ABSENT:
            continue
        if not ok(value):
            finite = " (a finite one: not inf or nan)" if isinstance(value, float) and not math.isfinite(value) else ""
            raise UserError(f"{key}={value!r} is not valid: it must be {valid}{finite}")


def check_interpolations(cfg: DictConfig, path: str = "") -> None:
    """Every ``${...}`` of the composed config (the ``hydra`` node and what only a Hydra run can resolve,
    ``${hydra:...}``, aside) resolves: ``data.data_dir=${oc.env:NOPE}`` is one line naming the key,
    not a traceback when the part is built. The run's own resolvers (``unique_dir``, which creates a
    folder) live in the ``hydra`` node, which is never resolved here."""
    from omegaconf import ListConfig

    keys = cfg.keys() if isinstance(cfg, DictConfig) else range(len(cfg))
    for key in keys:
        name = f"{path}.{key}" if path else str(key)
        if name == "hydra":
            continue
        node = cfg._get_node(key)
        if node._is_interpolation():
            try:
                cfg[key]
            except OmegaConfBaseException as error:
                text = str(error).splitlines()[0]
                if "hydra" not in text.lower():  # ${hydra:...}: resolved by the run itself
                    raise UserError(f"{name}={node._value()!r} does not resolve: {text}") from None
        elif isinstance(node, (DictConfig, ListConfig)) and not node._is_none() and not node._is_missing():
            check_interpolations(node, name)


def missing_keys(node, path: str = "") -> list[str]:
    """Keys left ``???`` (required), found without resolving any interpolation (some need a Hydra run)."""
    from omegaconf import ListConfig

    found = []
    for key in node.keys() if isinstance(node, DictConfig) else range(len(node)):
        child, name = node._get_node(key), f"{path}.{key}" if path else str(key)
        if name == "hydra":
            continue  # Hydra's own node: its required keys are Hydra's to fill
        if child._is_missing():
            found.append(name)
        elif isinstance(child, (DictConfig, ListConfig)) and not child._is_none() and not child._is_interpolation():
            found += missing_keys(child, name)
    return found


def check_required(cfg: DictConfig, required: dict[str, str] | None = None) -> None:
    """A key left ``???`` (``data.root`` of ``data=image_folder``): one line saying how to give it."""
    for key in missing_keys(cfg):
        raise UserError(f"{key} is required: {(required or {}).get(key, f'add {key}=<value> to the command line')}")


def arguments_of(target: str) -> list[str] | None:
    """The keyword arguments the callable ``target`` takes, following ``**kwargs`` up a class's bases;
    None when it cannot be told (a function taking ``**kwargs``, a name that does not import)."""
    import inspect

    from hydra.utils import get_object

    try:
        found = get_object(target)
    except Exception:  # noqa: BLE001 -- a target that does not import is reported when it is built
        return None
    functions = [c.__dict__["__init__"] for c in found.__mro__ if "__init__" in c.__dict__ and c is not object] \
        if inspect.isclass(found) else [found]
    names: set[str] = set()
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return sorted(names)
    return None


def check_additions(cfg: DictConfig, overrides: list[str]) -> None:
    """Refuse ``+key=value`` for a key the run would not read: Hydra adds any new key (``+`` is refused
    for one that exists), so ``+ckpt_pth=...`` would train as if it were not there. A key is read when a
    part built from the config (a node with ``_target_``, whose keys become its arguments) takes it:
    ``+trainer.foo=1`` is refused too, Lightning's Trainer taking no ``foo``. ``++`` (add or override)
    is Hydra's way of saying "I know"."""
    groups = {path.relative_to(CONFIG_DIR).as_posix() for path in CONFIG_DIR.rglob("*") if path.is_dir()}
    for arg in overrides:
        key = arg[1:].partition("=")[0]
        if not arg.startswith("+") or arg.startswith("++") or "=" not in arg or key.split("@")[0] in groups \
                or key.startswith("hydra"):
            continue
        parts = key.split(".")
        owner = OmegaConf.select(cfg, ".".join(parts[:-1]), default=None) if len(parts) > 1 else None
        if isinstance(owner, DictConfig) and isinstance(owner.get("_target_"), str):
            valid = arguments_of(owner._target_)
            if parts[-1].startswith("_") or valid is None or parts[-1] in valid:  # _partial_, ...: Hydra's own
                continue
            did = f" (did you mean {near}?)" if (near := nearest(parts[-1], valid)) else ""
            raise UserError(f"{arg}: {owner._target_} takes no argument {parts[-1]!r}{did}; valid: {', '.join(valid)}")
        if any(isinstance(node, DictConfig) and "_target_" in node
               for node in (OmegaConf.select(cfg, ".".join(parts[:i]), default=None)
                            for i in range(1, len(parts) - 1))):
            continue  # deeper inside a part's argument (a dict it takes)
        parent = ".".join(parts[:-1])
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        valid = sorted(str(k) for k in node if not str(k).startswith("_") and k not in (parts[-1], "hydra")) \
            if isinstance(node, DictConfig) else []
        near = nearest(parts[-1], valid)
        did = f" (did you mean {(parent + '.' if parent else '') + near}?)" if near else ""
        raise UserError(f"{arg}: nothing reads {key}, so the run would ignore it{did}; "
                        f"keys{' of ' + parent if parent else ''}: {', '.join(valid)}")


def check_run(cfg: DictConfig, required: dict[str, str] | None = None,
              check: Callable[[DictConfig], None] | None = None) -> None:
    """What an entry point's task function checks first, on the config Hydra composed (once): nothing
    required left out, no ``+key`` unread, every value rule above, every interpolation resolvable, then
    the entry point's own rules (``check``). Raises UserError: one line, exit 2 at the entry point."""
    from hydra.core.hydra_config import HydraConfig

    check_required(cfg, required)
    check_additions(cfg, (OmegaConf.to_container(HydraConfig.get().overrides.task) if HydraConfig.initialized()
                          else []))  # unresolved
    check_config(cfg)
    check_interpolations(cfg)
    if check is not None:
        check(cfg)
