"""``UserError``: bad input, raised deliberately and reported as one line;
``check_number`` and ``check_choice``: the one range check and the one choice check, each in one message shape.

Dependency-free, so that every module of ``training/`` can raise it. The
entry points (cli/commandline.py) turn it into ``error: ...`` and exit 2;
nothing else is turned into one line, so bugs keep their tracebacks.
"""

import contextlib
import difflib
import functools
import math
import re
import sys
from collections.abc import Callable


class UserError(ValueError):
    """Bad input, reported as one line (exit 2). A ``ValueError`` so that callers
    catching ``ValueError`` still do; being a ``ValueError`` is not enough to be reported so:
    the entry points report any exception whose ``user_error`` is true (``models/`` has its own
    such class, so that a model file stays standalone)."""

    user_error = True


def user_error_in(error: BaseException | None) -> BaseException | None:
    """The user error ``error`` is, or was raised from (``raise ... from``: Hydra's ``instantiate`` wraps what a
    constructor raised so); None for anything else, which keeps its traceback."""
    while error is not None and getattr(error, "user_error", False) is not True:
        error = error.__cause__
    return error


def is_user_error(error: BaseException) -> bool:
    return user_error_in(error) is not None


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def check_number(name: str, value: object, must_be: str, within: Callable[[float], bool] = lambda v: True,
                 integer: bool = False) -> float | int:
    """``UserError`` for a numeric option out of its range: "<name> must be <must_be>, got <value>".
    Booleans, non-numbers, nan and inf are refused too; inf and nan are told why (``lr=inf`` is > 0)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not within(value):
        why = " (a finite one: not inf or nan)" if isinstance(value, float) and not math.isfinite(value) else ""
        raise UserError(f"{name} must be {must_be}{'' if integer else why}, got {value!r}")
    return value if integer else float(value)


def check_choice(name: str, value: object, valid: tuple) -> object:
    """``UserError`` for a value not among ``valid``: "<name>=<value> is not valid; valid: a, b"."""
    if value not in valid:
        raise UserError(f"{name}={value!r} is not valid; valid: {', '.join(map(str, valid))}")
    return value


def under(node: str, text: str, keys) -> str:
    """A constructor's one-line refusal named under the config node its values came from (the rule lives in the
    constructor alone): "dropout must be ..." from node ``model`` reads "model.dropout must be ..."; a line that
    starts with none of ``keys`` reads "model: ..."."""
    first = re.split(r"[ =]", text, maxsplit=1)[0]
    return f"{node}.{text}" if first in keys else f"{node}: {text}"


@contextlib.contextmanager
def user_errors_renamed(rename: Callable[[str], str], as_class: type[Exception] = UserError):
    """Inside it, a user error's one line becomes ``rename(line)``, raised as ``as_class``: a rule that lives in a
    constructor, named as the caller's input states the value (a checkpoint's stored config, a card). Anything
    else passes unchanged: a bug keeps its traceback."""
    try:
        yield
    except Exception as error:
        found = user_error_in(error)
        if found is None:
            raise
        raise as_class(rename(first_line(found))) from None


def fail(text: str, status: int = 2) -> None:
    print(f"error: {text}", file=sys.stderr)
    sys.exit(status)


def user_errors_as_lines(function: Callable) -> Callable:
    """For the set-up phase of a task function: bad input -> one line, exit 2."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if is_user_error(error):
                fail(first_line(user_error_in(error)))
            raise

    return wrapper


LOOKALIKES = str.maketrans("oil", "011")  # letters typed for digits: resnet2O, vggl1, resnetI8


def nearest(value: str, valid: list[str]) -> str | None:
    """The valid name a typo most likely meant: one that differs only in case or in a letter typed for a
    digit (``resnet2O`` -> resnet20, where difflib alone prefers resnet32), else difflib's closest."""
    plain = {name.lower().translate(LOOKALIKES): name for name in reversed(valid)}  # the first wins a tie
    typed = value.lower().translate(LOOKALIKES)
    if typed in plain:
        return plain[typed]
    near = difflib.get_close_matches(typed, list(plain), n=1)
    return plain[near[0]] if near else None
