"""What the entry points share around Hydra: a check of the command line
before anything is composed, and one-line errors instead of tracebacks.

A user's mistake (an unknown model, a missing data set, a bad value) gets
one line on stderr naming the bad value and what would be valid, and exit
status 2. Bugs still raise with their full traceback.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
from pathlib import Path
from typing import Callable

from hydra.errors import InstantiationException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

# errors that mean "the input is wrong", not "the code is wrong"
USER_ERRORS = (ValueError, FileNotFoundError, MissingMandatoryValue)


class UserError(Exception):
    """Bad input, reported as one line."""


def group_options(config_dir: Path) -> dict[str, list[str]]:
    """Every config group under ``config_dir`` -> its option names (``model`` -> ``lenet5``, ...)."""
    groups: dict[str, list[str]] = {}
    for path in sorted(config_dir.rglob("*.yaml")):
        group = path.parent.relative_to(config_dir).as_posix()
        if group != "." and not group.startswith(("_", "hydra")):
            groups.setdefault(group, []).append(path.stem)
    return groups


def check_overrides(argv: list[str], config_dir: Path) -> None:
    """Refuse ``group=option`` overrides whose option does not exist, with the
    valid ones, before Hydra composes (its own message spans many lines)."""
    groups = group_options(config_dir)
    for arg in argv:
        match = re.fullmatch(r"[+~]*([\w/.]+)=(.*)", arg)
        if not match or match.group(1) not in groups:
            continue
        group, value = match.groups()
        if value in ("", "null") or any(c in value for c in "()[]${}*"):
            continue  # sweeps like choice(...), interpolations: leave to Hydra
        for option in value.split(","):
            if option not in groups[group]:
                raise UserError(f"{group}={option!r} is not a {group} option; valid: {', '.join(groups[group])}")


def message(error: BaseException) -> str:
    """The innermost user-facing message (Hydra wraps errors raised while instantiating)."""
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def is_user_error(error: BaseException) -> bool:
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return isinstance(error, (UserError, *USER_ERRORS))


def run_dirname(overrides: str, max_bytes: int = 200) -> str:
    """A sweep run's folder name: its overrides (Hydra's ``override_dirname``),
    made safe to be one folder. A ``/`` in a value (``data.root=../images``)
    would nest folders, or with ``..`` put the run outside its sweep dir, so
    it becomes ``_``; a name longer than ``max_bytes`` (file systems allow 255)
    is cut and given a hash of the whole, so that runs stay apart."""
    name = overrides.replace("/", "_").replace("\\", "_") or "run"
    if len(name.encode()) > max_bytes:
        digest = hashlib.sha1(overrides.encode()).hexdigest()[:10]
        name = name.encode()[:max_bytes - 11].decode(errors="ignore") + "-" + digest
    return name


OmegaConf.register_new_resolver("run_dirname", run_dirname, replace=True)  # hydra/default.yaml's sweep.subdir


def fail(text: str, status: int = 2) -> None:
    print(f"error: {text}", file=sys.stderr)
    sys.exit(status)


def resume_argv(argv: list[str]) -> list[str]:
    """``resume=<run dir or checkpoint>`` -> the original run's overrides, then
    the ones given now, then its run dir and checkpoint, so the resumed run
    composes the same config and writes into the same dir (and TensorBoard run)."""
    import yaml

    from .checkpoints import resume_target

    targets = [a.split("=", 1)[1] for a in argv if a.startswith("resume=")]
    if not targets or targets[-1] in ("", "null"):
        return argv
    checkpoint, run_dir = resume_target(targets[-1])
    original = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    keep = lambda a: not a.startswith(("resume=", "hydra.run.dir="))  # noqa: E731
    return [a for a in original if keep(a)] + [a for a in argv if keep(a)] + [
        f"hydra.run.dir={run_dir}", f"resume={checkpoint}"]


def entry_point(config_dir: Path, main: Callable[[], object], prepare: Callable[[list[str]], list[str]] | None = None):
    """Wrap a ``@hydra.main`` function: rewrite the command line (``prepare``),
    check its overrides, and turn user errors raised before the run starts
    into one line and exit 2."""

    @functools.wraps(main)
    def run():
        try:
            if prepare is not None:
                sys.argv[1:] = prepare(sys.argv[1:])
            check_overrides(sys.argv[1:], config_dir)
        except Exception as error:
            if is_user_error(error):
                fail(message(error))
            raise
        return main()

    return run


def user_errors_as_lines(function: Callable) -> Callable:
    """For the set-up phase of a task function: bad input -> one line, exit 2."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if is_user_error(error):
                fail(message(error))
            raise

    return wrapper
