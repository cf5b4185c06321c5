"""``UserError``: bad input, raised deliberately and reported as one line.

Dependency-free, so that every module of ``training/`` can raise it. The
entry points (cli/commandline.py) turn it into ``error: ...`` and exit 2;
nothing else is turned into one line, so bugs keep their tracebacks.
"""


class UserError(ValueError):
    """Bad input, reported as one line (exit 2). A ``ValueError`` so that callers
    catching ``ValueError`` still do; being a ``ValueError`` is not enough to be reported so."""
