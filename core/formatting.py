"""The one number formatter (``human``) and the one markdown-table writer: every line, table and figure
that shows a count (parameters, MACs, images/s) shows it in one way, whichever room prints it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def human(n: float) -> str:
    """``651.7 k``, ``40.55 M``, ``1.81 G``: thousands with one decimal, larger units with two."""
    for size, suffix, digits in ((1e12, "T", 2), (1e9, "G", 2), (1e6, "M", 2), (1e3, "k", 1)):
        if abs(n) >= size:
            return f"{n / size:.{digits}f} {suffix}"
    return f"{n:g}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence], right: Iterable[int] = ()) -> list[str]:
    """A markdown table's lines; the columns numbered in ``right`` are right-aligned, a ``|`` in a cell escaped."""
    right = set(right)
    cell = lambda value: str(value).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i in right else "---"
                                                              for i in range(len(header))) + "|"]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
