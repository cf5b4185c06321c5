"""What the entry points share around Hydra, which composes each run once (``@hydra.main``): ``--help``,
a sweep's cells checked before its first run, the parts built from the config, and one line instead of
a traceback for a user's mistake.

A mistake gets one line on stderr naming the bad value and what would be valid, and exit status 2: an
exception whose ``user_error`` attribute is true (``core.errors``; ``models.ModelOptionError`` and
``datamodules.DataError`` are their rooms' own), or one of Hydra's composition errors, read by class and
attributes (``hydra_error_line``). Every other exception, a ``ValueError`` from a bug included, keeps its
traceback.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.errors import HydraException, InstantiationException
from omegaconf import DictConfig, OmegaConf

from core.errors import UserError, fail, first_line, nearest, under, user_error_in
from core.files import remove_empty_run_dirs
from core.rundir import check_run_dir_arguments
from reporting.trust import parse_overrides, resumed_config

from .resolvers import register_resolvers

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

SWEEP_FLAGS = ("-m", "--multirun")  # a sweep: its cells are checked before its first run (check_sweep)
HELP_FLAGS = ("--help", "-h")  # answered here (entry_help), not by Hydra's page


def unwrap(error: BaseException) -> BaseException:
    """The error Hydra wrapped while instantiating a part, or OmegaConf while resolving an interpolation."""
    from omegaconf.errors import InterpolationResolutionError

    while isinstance(error, (InstantiationException, InterpolationResolutionError)):
        inner = error.__cause__ or (error.__context__ if isinstance(error, InterpolationResolutionError) else None)
        if inner is None:
            break
        error = inner
    return error


def is_user_error(error: BaseException) -> bool:
    """Bad input, raised on purpose (``core.errors.is_user_error``), inside Hydra's or OmegaConf's wrapping."""
    return user_error_in(unwrap(error)) is not None


def message(error: BaseException) -> str:
    """The first line of the user error's message, or of the innermost error's."""
    return first_line(user_error_in(unwrap(error)) or unwrap(error))


def group_options(config_dir: Path) -> dict[str, list[str]]:
    """Every config group under ``config_dir`` -> its option names (``model`` -> ``lenet5``, ...)."""
    groups: dict[str, list[str]] = {}
    for path in sorted(config_dir.rglob("*.yaml")):
        group = path.parent.relative_to(config_dir).as_posix()
        if group != "." and not group.startswith(("_", "hydra")):
            groups.setdefault(group, []).append(path.stem)
    return groups


def check_group_values(argv: list[str], config_dir: Path) -> None:
    """``model=null`` or ``model=``: a group no run can leave out (Hydra's own error for it is a ValueError
    with a traceback). Reads the command line; changes nothing."""
    groups = group_options(config_dir)
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in groups and value == "":
            raise UserError(f"{arg}: no {key} option given; valid: {', '.join(groups[key])}")
        if key in groups and value == "null":
            raise UserError(f"{arg}: this group cannot be left out; give one of its options: {', '.join(groups[key])}")


def hydra_error_line(error: BaseException, hints: dict[str, str]) -> str | None:
    """Hydra's own composition errors as one line, read by their class and attributes (never their text):
    a malformed override, a group option that does not exist, a key the config does not have. None for
    anything else (a bug keeps its traceback)."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if isinstance(error, OverrideParseException):
        key, _, value = error.override.partition("=")
        if any(c in value for c in "=,") and not value.startswith(("'", '"')):  # a sweep run's dir: a=b,seed=1
            return (f"{error.override!r}: a value holding '=' or ',' (a sweep run's dir) is quoted for Hydra; "
                    f"in a shell: \"{key}='{value}'\"")
        return f"{error.override!r} is not a valid override ({error.message.splitlines()[0]}); write key=value"
    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        near = nearest(option, error.options)
        hint = f" (did you mean {near}?)" if near else ""
        return f"{group}={option!r} is not a {group} option{hint}; valid: {', '.join(error.options)}"
    if not isinstance(error, ConfigCompositionException):
        return None
    cause = error.__cause__
    key, node = getattr(cause, "full_key", None), getattr(cause, "parent_node", None)
    root = lambda arg: re.split(r"[./@=]", arg.lstrip("+~"))[0]  # noqa: E731
    hinted = next((arg for arg in sys.argv[1:] if root(arg) in hints and (not key or root(arg) == root(key))), None)
    if hinted is not None:  # evaluate.py model=...: a key this entry point takes from elsewhere
        return f"{hinted}: {hints[root(hinted)]}"
    if not key or not isinstance(node, DictConfig):
        return " ".join(str(error).split())  # Hydra's whole message, on one line
    parent, _, name = key.rpartition(".")
    valid = sorted(str(k) for k in node.keys() if not str(k).startswith("_") and k != "hydra")
    near = nearest(name, valid)
    did = f", did you mean {(parent + '.' if parent else '') + near}?" if near else ""
    where = f"{parent} has no key {name!r}" if parent else f"there is no key {name!r}"
    given = next((arg for arg in sys.argv[1:] if arg.lstrip("+~").partition("=")[0] == key), key)  # as typed
    return f"{given}: {where}{did}; valid keys{' of ' + parent if parent else ''}: {', '.join(valid)}"


def concrete_variants(parsed: list, limit: int = 32) -> list[list[str]]:
    """Command lines without sweeps that together use every swept value once: the
    first value of every sweep, then each other value of one sweep at a time.
    Continuous sweeps (interval, Optuna's) are left out: their sweeper checks them."""
    first, others = [], []
    for override in parsed:
        key = override.get_key_element()
        if override.is_delete():
            first.append(key if override.value() is None else f"{key}={override.get_value_element_as_str()}")
        elif not override.is_sweep_override():
            first.append(f"{key}={override.get_value_element_as_str()}")
        elif override.is_discrete_sweep():
            values = list(itertools.islice(override.sweep_string_iterator(), limit))
            first.append(f"{key}={values[0]}")
            others += [(len(first) - 1, f"{key}={value}") for value in values[1:]]
    variants = [first]
    for index, replacement in others[:limit]:
        variants.append([*first[:index], replacement, *first[index + 1:]])
    return variants


def check_sweep(argv: list[str], config_dir: Path, config_name: str, required: dict[str, str] | None) -> None:
    """Before the first run of a sweep (-m): every swept value composes, keys exist, nothing required is left
    out, no ``+key`` goes unread; so a typo in the tenth cell does not surface after nine runs. Values are
    checked by each run (a bad cell fails alone and the sweep goes on)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .validation import check_additions, check_required

    try:
        for variant in concrete_variants(parse_overrides([a for a in argv if not a.startswith("-")])):
            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
                cfg = compose(config_name, overrides=variant)
            check_required(cfg, required)
            check_additions(cfg, variant)
    finally:
        GlobalHydra.instance().clear()


def entry_help(config_dir: Path, config_name: str, overrides: list[str]) -> str:
    """``--help``: the usage lines at the top of the entry point's config, the groups its defaults list composes
    (with their options), then its config as composed with ``overrides``. Hydra's own page lists every group
    under configs/, those only another entry point reads and internal ones (``_base``, ``recipe``) too."""
    import yaml
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    text = (config_dir / f"{config_name}.yaml").read_text()
    usage = [line[2:] for line in itertools.takewhile(lambda line: line.startswith("#"), text.splitlines())]
    read = []
    for entry in (yaml.safe_load(text) or {}).get("defaults", []):
        if isinstance(entry, dict):
            (key, value), = entry.items()
            group = key.removeprefix("optional ")
            # recipe: ${model}, internal
            if not group.startswith(("override ", "_", "hydra")) and "${" not in str(value):
                read.append(group)
    options = group_options(config_dir)
    lines = [*usage, ""]
    if read:
        lines += ["== Configuration groups ==", "Compose your configuration from those groups (group=option)", ""]
        lines += [f"{group}: {', '.join(options.get(group, []))}" for group in sorted(read)] + [""]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
    except HydraException as error:
        raise UserError(message(error)) from None
    finally:
        GlobalHydra.instance().clear()
    lines += ["== Config ==", "Override anything in the config (foo.bar=value)", "", OmegaConf.to_yaml(cfg).rstrip(),
              "", "--cfg job prints the config alone; --hydra-help lists Hydra's own flags."]
    return "\n".join(lines)


def printing_a_resumed_config(argv: list[str], config_name: str | None) -> bool:
    """``--cfg job`` (or ``-c job``) with ``resume=`` on train.py's command line."""
    flag = next((i for i, a in enumerate(argv) if a in ("--cfg", "-c")), None)
    return (config_name == "train" and flag is not None and argv[flag + 1:flag + 2] == ["job"]
            and any(a.startswith("resume=") for a in argv))


def entry_point(config_dir: Path, main: Callable[[], object], config_name: str | None = None,
                hints: dict[str, str] | None = None, required: dict[str, str] | None = None):
    """Wrap a ``@hydra.main`` function, which composes the run once: register our resolvers, answer
    ``--help``, check a sweep's cells before its first run, and turn bad input into one line and exit 2
    (an exception whose class says ``user_error``, or Hydra's own composition errors: ``hydra_error_line``).
    The task function checks its values itself (``cli.validation.check_run``)."""

    @functools.wraps(main)
    def run():
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's errors reach us as exceptions: translated below, or a traceback
        logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # "building the font cache" on a first run
        register_resolvers()  # configs/hydra/default.yaml's run and sweep dirs; never at import
        argv = sys.argv[1:]
        try:
            if config_name is not None and any(a in HELP_FLAGS for a in argv):
                print(entry_help(config_dir, config_name, [a for a in argv if not a.startswith("-")]))
                raise SystemExit(0)  # as Hydra's own --help; nothing composed, no run dir
            if printing_a_resumed_config(argv, config_name):
                print(resumed_config(config_dir, config_name, argv))
                raise SystemExit(0)  # as Hydra's own --cfg: nothing run, nothing written
            check_run_dir_arguments(argv)  # before Hydra creates it: a file, a read-only file system
            check_group_values(argv, config_dir)
            if config_name is not None and any(a in SWEEP_FLAGS for a in argv):
                check_sweep(argv, config_dir, config_name, required)
            return main()
        except Exception as error:
            line = message(error) if is_user_error(error) else hydra_error_line(unwrap(error), hints or {})
            if line is None:
                raise
            fail(line)
        finally:
            remove_empty_run_dirs()  # a run refused by its checks, or a command that only printed, leaves no dir

    return run


def instantiate_part(node: DictConfig, key: str, **kwargs):
    """A part built from the config node at ``key``; a bad value its constructor refuses (the one place that rule
    lives) is named by its full key: the model's "dropout must be ..." reads "model.dropout must be ..." here."""
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except Exception as error:
        if not is_user_error(error):
            raise
        text = message(error)
        if text.startswith((f"{key}.", f"{key}=", f"{key} ")):  # named already
            raise unwrap(error) from None
        raise UserError(under(key, text, node)) from None


def instantiate_all(group: DictConfig | None, **purge) -> list:
    """Build every ``_target_`` node of a group of named parts (callbacks, loggers); ``purge``: more
    arguments for the loggers that keep a resumed run's history (``purge_step``: training/loggers.py)."""
    from hydra.utils import instantiate

    return [instantiate(node, **(purge if node._target_.endswith((".TensorBoardLogger", ".CSVLogger")) else {}))
            for node in (group or {}).values() if node and "_target_" in node]


def instantiate_trainer(node: DictConfig, **kwargs):
    """``lightning.Trainer`` (the node's ``_target_``) from its config node's plain values, as this machine can run
    it (training/trainer.py)."""
    from hydra.utils import get_class

    from training.trainer import build_trainer

    options = OmegaConf.to_container(node, resolve=True)
    return build_trainer(get_class(options.pop("_target_")), options, **kwargs)
