"""What a checkpoint or a run dir handed to us may name: options, never code.

Command lines and our own ``configs/`` name code (``_target_``). A
checkpoint's stored configuration and a run dir's ``.hydra/overrides.yaml``
are data someone may have crafted, so they are read as options only:

- the model is rebuilt through the registry (``models.create_model``) from
  its registered ``name`` and the options its builder accepts;
- the data module from the ``configs/data/<option>.yaml`` option its stored
  node matches, with that option's keys only; the class comes from our YAML;
- their values are checked by the builders that take them, as a command line's are;
- any ``_target_`` stored anywhere in the configuration that none of our
  configs names, any other ``_x_`` key of Hydra's (``_args_``, ...) and any
  key the registry or the option does not know is refused with one line;
- a run dir's overrides choose options and set plain values, never code nor
  where anything is written (``check_untrusted_overrides``,
  ``drop_stored_locations``); ``resume_config`` composes a resumed run from them.

Nothing stored is ever passed to ``hydra.utils.instantiate``.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from core.errors import UserError, first_line, under, user_errors_renamed

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
PLAIN = (str, int, float, bool, type(None))
REFUSED = "a checkpoint names options, not code; refused"
# parts our configs named before and no longer do: checkpoints and run dirs written then still load
RETIRED = frozenset({"lightning.pytorch.loggers.TensorBoardLogger", "lightning.pytorch.loggers.CSVLogger",
                     "lightning.pytorch.callbacks.LearningRateMonitor", "lightning.pytorch.callbacks.ModelCheckpoint",
                     "torch.nn.CrossEntropyLoss"})


@functools.cache
def named_targets(config_dir: Path = CONFIG_DIR) -> frozenset[str]:
    """Every ``_target_`` that a file of ``configs/`` names."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_target_" and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in config_dir.rglob("*.yaml"):
        walk(yaml.safe_load(path.read_text()))
    return frozenset(found | RETIRED)


@functools.cache
def data_options(config_dir: Path = CONFIG_DIR) -> dict[str, dict]:
    """``configs/data/<option>.yaml`` -> its keys and values, with the option it extends merged in."""

    def load(name: str) -> dict:
        raw = yaml.safe_load((config_dir / "data" / f"{name}.yaml").read_text()) or {}
        merged: dict = {}
        for parent in raw.pop("defaults", []):
            if isinstance(parent, str) and parent != "_self_":
                merged.update(load(parent))
        return {**merged, **raw}

    return {path.stem: load(path.stem) for path in sorted((config_dir / "data").glob("*.yaml"))}


def check_no_code(node: Any, source: str, path: str = "config") -> None:
    """Refuse a stored ``_target_`` none of our configs names, and Hydra's other ``_x_`` keys."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key == "_target_" and value not in named_targets():
                raise UserError(f"{source}: its stored {where}={value!r} is not a part our configs name ({REFUSED})")
            if (isinstance(key, str) and key.startswith("_") and key.endswith("_")
                    and key not in ("_target_", "_partial_")):
                raise UserError(f"{source}: its stored {where} is a Hydra instruction, not an option ({REFUSED})")
            check_no_code(value, source, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_no_code(value, source, f"{path}[{i}]")


def plain(values: dict, source: str, node: str) -> dict:
    for key, value in values.items():
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, PLAIN) for v in items) or any(isinstance(v, str) and "${" in v for v in items):
            raise UserError(f"{source}: its stored {node}.{key}={value!r} is not a plain value ({REFUSED})")
    return values


def stored_config(checkpoint: dict, source: str) -> dict:
    """The training configuration stored in a checkpoint, checked to name no code."""
    config = (checkpoint.get("hyper_parameters") or {}).get("config")
    if not isinstance(config, dict):
        raise UserError(f"{source} holds no training configuration; was it written by train.py?")
    check_no_code(config, source)
    for node in ("model", "data"):
        if not isinstance(config.get(node), dict):
            raise UserError(f"{source}: its stored config has no {node} node; was it written by train.py?")
    model_spec(config, source)
    data_spec(config, source)
    return config


def model_spec(config: dict, source: str) -> tuple[str, dict]:
    """(registered model name, its options) from a stored config, checked against the registry."""
    from models import list_models, model_options

    node = dict(config["model"])
    target = node.pop("_target_", "models.create_model")
    if target != "models.create_model":
        raise UserError(f"{source}: its stored config.model._target_={target!r} is not models.create_model ({REFUSED})")
    name = node.pop("name", None)
    node.pop("weights", None)  # a fine-tune's starting weights (+model.weights=): the checkpoint holds what it became
    if name not in list_models():
        raise UserError(f"{source}: its stored config.model.name={name!r} is not a model of the zoo; valid: "
                        f"{', '.join(list_models())}")
    valid = model_options(name)
    for key in node:
        if key not in valid:
            raise UserError(f"{source}: its stored config.model.{key} is not an option of {name}; valid: "
                            f"{', '.join(valid)}")
    plain(node, source, "config.model")  # its values are checked by the builder, as a command line's are
    return name, node


def data_spec(config: dict, source: str, replace: dict | None = None) -> tuple[str, str, dict]:
    """(data option name, the class our YAML names for it, its options) from a stored config:
    the option whose ``_target_`` (and ``dataset``) the stored node has, with only that option's keys."""
    node = dict(config["data"])
    target = node.pop("_target_", None)
    matches = [name for name, option in data_options().items()
               if option.get("_target_") == target
               and option.get("dataset") == node.get("dataset", option.get("dataset"))]
    if not matches:
        raise UserError(f"{source}: its stored config.data._target_={target!r} matches no data option of configs/data/ "
                        f"({', '.join(data_options())}; {REFUSED})")
    name = matches[0]
    option = data_options()[name]
    for key in node:
        if key not in option:
            raise UserError(f"{source}: its stored config.data.{key} is not a key of data={name}; "
                            f"valid: {', '.join(k for k in option if not k.startswith('_'))}")
    values = {**plain(node, source, "config.data"), **(replace or {})}
    return name, option["_target_"], values


def build_model(config: dict, source: str, **sizes):
    """The zoo model a stored config describes, through the registry only. A value its builder refuses (the one place
    that rule lives) is named as the file stores it: "<file>: its stored config.model.dropout must be ..."."""
    from models import create_model

    name, options = model_spec(config, source)
    with user_errors_renamed(lambda line: f"{source}: its stored {under('config.model', line, options)}"):
        return create_model(name, **{**options, **sizes})


def build_datamodule(config: dict, source: str, replace: dict | None = None):
    """The data module a stored config describes: the class our configs name for its option, with its options."""
    from hydra.utils import get_class

    name, target, values = data_spec(config, source, replace)
    return get_class(target)(**values)


def start_from(cfg, module) -> None:
    """``resume=`` (continue a run in its dir) or ``ckpt_path=`` (fine-tune: a new run from a checkpoint's
    weights; optimizer, schedule and epochs start afresh), each checked like ``evaluate.py``'s checkpoint;
    the fine-tune's weights are loaded here, a resume's by Lightning."""
    from training.checkpoints import check_fits, load_checkpoint, resolve_checkpoint

    if cfg.resume and cfg.ckpt_path:
        raise UserError("give resume= (continue a run in its dir) or ckpt_path= (a new run from its weights), not both")
    fits = f"model={cfg.model.name} as configured"
    if cfg.resume:
        checkpoint = load_checkpoint(cfg.resume)
        check_same_length(cfg, stored_config(checkpoint, cfg.resume))  # options only
        check_fits(module.state_dict(), checkpoint["state_dict"], cfg.resume, fits)
        check_unfinished(cfg, checkpoint)
        return
    if cfg.ckpt_path:
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        path = resolve_checkpoint(cfg.ckpt_path)
        checkpoint = load_checkpoint(path)
        stored_config(checkpoint, str(path))
        check_fits(module.state_dict(), checkpoint["state_dict"], str(path), fits)
        module.load_state_dict(checkpoint["state_dict"])
        rank_zero_only(print)(fine_tune_line(path, checkpoint))


def check_same_length(cfg, stored: dict) -> None:
    """A resumed run keeps its learning-rate schedule, which was laid out for the run's length: a new
    ``trainer.max_epochs`` would leave the extra epochs at the schedule's end (lr 0 for a cosine)."""
    before, now = stored.get("trainer", {}).get("max_epochs"), cfg.trainer.max_epochs
    factory = cfg.scheduler.factory
    sized = factory is not None and any(key in factory and factory[key] is None for key in ("T_max", "total_steps"))
    if sized and before is not None and before != now:
        raise UserError(f"resume= with trainer.max_epochs={now}: this run's learning-rate schedule is laid out for "
                        f"{before} epochs; resume it as it was (leave trainer.max_epochs out), or train a new run "
                        f"from its weights: ckpt_path=<its checkpoint> trainer.max_epochs={now}")


def check_unfinished(cfg, checkpoint: dict) -> None:
    """``resume=`` of a run that ended (its metrics.json says completed, and the checkpoint is at its last
    epoch or early stopping ended it): one line, and nothing is run or rewritten."""
    import json

    try:
        status = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return
    epochs = int(checkpoint.get("epoch", -1)) + 1
    stopped = any(isinstance(state, dict) and state.get("stopped_epoch") for key, state in
                  (checkpoint.get("callbacks") or {}).items() if str(key).startswith("EarlyStopping"))
    if status == "completed" and (epochs >= cfg.trainer.max_epochs or stopped):
        why = ("early stopping ended it" if stopped and epochs < cfg.trainer.max_epochs
               else f"{epochs} of {cfg.trainer.max_epochs} epochs done")
        raise UserError(f"resume={cfg.resume}: this run is finished ({why}; metrics.json: completed), so "
                        "nothing was run or changed; to train longer give trainer.max_epochs=<more> (a schedule "
                        "without a run length), or start a new run from its weights: ckpt_path=<run dir> "
                        "trainer.max_epochs=<more>")


def evaluation_data(cfg, config: dict, source: str) -> dict:
    """The stored data options ``evaluate.py``'s ``data.*`` replace: a key the checkpoint's data has not
    (``data.root`` for a digits checkpoint) is refused, and ``data_dir`` (downloads, the image cache)
    always comes from this command line (``data.data_dir``, else ``paths.data_dir``), never from the
    checkpoint: a checkpoint does not choose where anything is written."""
    stored = config["data"]
    given = {key: value for key, value in cfg.data.items() if value is not None}
    for key, value in given.items():
        if key not in stored:
            name = data_spec(config, source)[0]
            raise UserError(
                f"data.{key}={value!r}: {source} was trained on data={name}, which has no {key}; valid here: "
                f"{', '.join(k for k in ('data_dir', 'root', 'batch_size', 'num_workers', 'pipeline') if k in stored)}")
    if "data_dir" in stored:
        given["data_dir"] = str(given.get("data_dir") or cfg.paths.data_dir)
    return given


def fine_tune_line(path: Path, checkpoint: dict) -> str:
    """What ``ckpt_path=`` does, said once at the start, since the lightning-hydra-template's ckpt_path resumes."""
    epoch = checkpoint.get("epoch")
    when = f" (epoch {epoch + 1}, step {checkpoint.get('global_step')})" if isinstance(epoch, int) else ""
    return (f"fine-tune: weights from {path}{when}; a fresh optimizer and learning-rate schedule from epoch 1, "
            f"in a new run dir (resume=<that run dir> continues that run instead)")


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parse of each override; a malformed one is named."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, parsed = OverridesParser.create(), []
    for arg in overrides:
        try:
            parsed += parser.parse_overrides([arg])
        except HydraException as error:  # OverrideParseException: Hydra's grammar, a user's typo
            first = str(error).strip().splitlines()[0]
            raise UserError(f"{arg!r} is not a valid override ({first}); write key=value") from None
    return parsed


# the last part of a key that says where something is written or read from disk (callbacks.*.dirpath,
# logger.*.save_dir, trainer.default_root_dir, ...); with paths.* and logger.*.name / version / sub_dir
# (folders below save_dir)
LOCATION_KEYS = ("dirpath", "filename", "save_dir", "data_dir", "root_dir", "output_dir", "log_dir", "default_root_dir",
                 "dir")


def names_a_location(key: str) -> bool:
    parts = key.split(".")
    return (parts[0] == "paths" or parts[-1] in LOCATION_KEYS
            or (parts[0] == "logger" and len(parts) > 2 and parts[-1] in ("name", "version", "sub_dir")))


def drop_stored_locations(overrides: list[str], argv: list[str], source: str) -> list[str]:
    """A run dir's overrides without those that choose where anything is written (``paths.output_dir=``,
    ``callbacks.*.dirpath=``, ``logger.*.save_dir=``, ``data.data_dir=``, ...): a resumed run writes into
    its own dir and takes its data and cache dirs from the command line. One line names what is ignored
    (typed again on the command line, such an override is the user's and kept)."""
    parsed = parse_overrides(overrides)
    ignored = [o.input_line for o in parsed if names_a_location(o.key_or_group) and o.input_line not in argv]
    if ignored:
        print(f"note: {source}: ignored {', '.join(ignored)}: a run dir does not choose where anything is written "
              "(give it on the command line to use it)", file=sys.stderr)
    return [o for o in overrides if o not in ignored]


def check_untrusted_overrides(overrides: list, source: str) -> None:
    """Overrides read from a file someone handed us (a run dir's .hydra/overrides.yaml) may choose
    options and set values, never name code: no ``hydra.*`` keys, no ``_target_``-like keys, values
    plain (no dicts, no ``${...}`` interpolations or resolvers, no sweeps); then they pass the same
    checks as a command line."""
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"{source} is not a list of key=value overrides")
    for override in parse_overrides(overrides):
        text = override.input_line
        key = override.key_or_group
        value = None if override.is_delete() else override.value()
        plain = [value] if not isinstance(value, list) else value
        if key.split("/")[0].split(".")[0] == "hydra" or any(p.startswith("_") for p in re.split(r"[./@]", key)):
            raise UserError(f"{source}: {text!r} sets {key}, which a run dir may not set (refused: a run dir names "
                            "options, not code)")
        if override.is_sweep_override() or not all(v is None or isinstance(v, (str, int, float, bool)) for v in plain):
            raise UserError(f"{source}: {text!r} is not a plain value (refused: a run dir names options, not code)")
        if any(isinstance(v, str) and "${" in v for v in plain):
            raise UserError(f"{source}: {text!r} holds an interpolation (refused: a run dir names options, not code)")


def resume_config(cfg: DictConfig) -> dict:
    """``resume=<run dir or checkpoint>``: ``cfg`` becomes, in place, the run's config, composed again from its
    own overrides and then the ones given now, so the resumed run is the same run (Hydra has already put it
    in that run's dir: ``run_dir`` in configs/train.yaml). Hydra's record of this run (its choices and
    overrides, written to .hydra/ and HPARAMS) becomes the resumed run's.

    A run dir handed to us is data, not code: its checkpoint must load with weights_only and store options
    only (reporting/trust.py), and its overrides may choose options and set plain values, never name code
    (``check_untrusted_overrides``) nor where anything is written (``drop_stored_locations``), unless the
    same override is typed again now. Returns the loggers' ``purge_step``: they drop what the killed run logged
    after its checkpoint (training/loggers.py)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from reporting.trust import check_untrusted_overrides, drop_stored_locations, stored_config
    from training.checkpoints import resume_target  # torch: only when resuming

    checkpoint, run_dir, loaded = resume_target(cfg.resume)
    stored_config(loaded, str(checkpoint))  # refuse unsafe or unreadable files, or stored code, before anything runs
    hydra_cfg = HydraConfig.get()
    if Path(hydra_cfg.runtime.output_dir).resolve() != run_dir.resolve():
        raise UserError(f"resume={cfg.resume!r} continues the run in its own dir {run_dir}; leave hydra.run.dir out")
    source = run_dir / ".hydra" / "overrides.yaml"
    try:
        original = yaml.safe_load(source.read_text()) or []
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"{source} is not readable ({first_line(error)}); resume needs the run's overrides") from None
    given = [a for a in OmegaConf.to_container(hydra_cfg.overrides.task) if not a.startswith("resume=")]
    original = [a for a in original if not isinstance(a, str) or not a.startswith(("resume=", "hydra.run.dir="))]
    check_untrusted_overrides([a for a in original if a not in given], str(source))
    original = drop_stored_locations(original, given, str(source))
    quoted = "'" + str(checkpoint).replace("\\", "\\\\").replace("'", "\\'") + "'"  # a sweep run's dir: a=b,seed=1
    overrides = [*original, *given, f"resume={quoted}"]
    if GlobalHydra.instance().is_initialized():  # inside @hydra.main
        composed = compose(hydra_cfg.job.config_name, overrides=overrides, return_hydra_config=True)
    else:  # a task function called on its own (tests)
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            composed = compose(hydra_cfg.job.config_name or "train", overrides=overrides, return_hydra_config=True)
    with read_write(hydra_cfg), open_dict(hydra_cfg):  # what .hydra/ and HPARAMS record: the resumed run's
        hydra_cfg.runtime.choices = composed.hydra.runtime.choices
        hydra_cfg.overrides.task = composed.hydra.overrides.task
    with open_dict(cfg):
        for key in list(cfg):
            del cfg[key]
        for key in composed:
            if key != "hydra":  # as @hydra.main hands a config over
                cfg[key] = composed._get_node(key)  # interpolations kept, resolved as the run reads them
    return {"purge_step": loaded.get("global_step", 0)}


def resumed_config(config_dir: Path, config_name: str, argv: list[str]) -> str:
    """``train.py resume=<run> --cfg job``: the config the resumed run will have (its own overrides, then the ones
    given now: ``reporting.trust.resume_config``), not the command's own, which Hydra would print. Reads the run
    dir and its checkpoint, writes nothing. ``--resolve`` resolves the interpolations, as Hydra's flag does."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    overrides = [a for a in argv if not a.startswith("-") and a not in ("job", "hydra", "all")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            with read_write(cfg.hydra), open_dict(cfg.hydra):  # as Hydra's run would have it: the run's own dir
                cfg.hydra.runtime.output_dir = str(Path(OmegaConf.select(cfg, "hydra.run.dir")).absolute())
            HydraConfig.instance().set_config(cfg)
            with open_dict(cfg):
                del cfg["hydra"]
            resume_config(cfg)
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.to_yaml(cfg, resolve="--resolve" in argv).rstrip()
