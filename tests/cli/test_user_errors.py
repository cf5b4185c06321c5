"""One user-error contract: an exception whose class says ``user_error = True`` is one line and exit 2 at
the entry point, whichever room raised it; any other exception, a ValueError from a bug included, keeps
its traceback. No lookup by module name, no reading of the raising source line."""

from __future__ import annotations

import pytest
from hydra.errors import InstantiationException

from cli.commandline import is_user_error
from core.errors import UserError, check_choice, check_number, user_errors_as_lines


class ElsewhereError(RuntimeError):  # a room the entry points never import: the attribute is enough
    user_error = True


@pytest.mark.parametrize("error, expected", [
    (UserError("x"), True), (ElsewhereError("x"), True), (ValueError("x"), False), (KeyError("x"), False)])
def test_the_attribute_decides(error, expected):
    assert is_user_error(error) is expected
    wrapped = InstantiationException("building model")  # Hydra wraps what a _target_ raised
    wrapped.__cause__ = error
    assert is_user_error(wrapped) is expected


def test_a_user_error_is_one_line_and_exit_2_and_a_bug_keeps_its_traceback(capsys):
    def raising(error):
        raise error

    with pytest.raises(SystemExit) as ended:
        user_errors_as_lines(raising)(ElsewhereError("data.root='/nowhere' does not exist\nsecond line"))
    assert ended.value.code == 2
    assert capsys.readouterr().err == "error: data.root='/nowhere' does not exist\n"
    with pytest.raises(ValueError, match="a bug"):
        user_errors_as_lines(raising)(ValueError("a bug"))


def test_the_one_range_check_and_the_one_choice_check_name_the_value_and_what_is_valid():
    with pytest.raises(UserError, match=r"^data\.batch_size must be an integer >= 1, got 0$"):
        check_number("data.batch_size", 0, "an integer >= 1", lambda v: v >= 1, integer=True)
    with pytest.raises(UserError, match=r"^data\.augment='sideways' is not valid; valid: none, crop$"):
        check_choice("data.augment", "sideways", ("none", "crop"))
    assert check_choice("data.augment", "crop", ("none", "crop")) == "crop"
