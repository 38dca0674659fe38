"""Errors a user can fix: printed by the CLI as a single line naming the input and the problem."""

from __future__ import annotations

from pydantic import ValidationError


class UserError(Exception):
    """Bad input, bad config or a bad environment, reported without a traceback."""


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def message_line(value: object) -> str:
    """The first line of ``str(value)`` alone (for messages whose context already says what failed)."""
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


def config_error(exc: ValidationError, root: str = "config") -> str:
    """A pydantic validation error as one line: the dotted key of the first problem and what is
    wrong with it (``scenes.threshold: Input should be greater than 0 (got -1)``,
    ``run.max_stepz: unknown key``), with how many more problems there are."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or root
    if first["type"] == "extra_forbidden":
        what = "unknown key"
    elif first["type"] == "missing":
        what = "missing"
    else:
        lines = str(first["msg"]).strip().splitlines() or [first["type"]]
        what = lines[0].removeprefix("Value error, ")
        value = first.get("input")
        if isinstance(value, (bool, int, float, str)) and first["type"] != "value_error":
            what += f" (got {value!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {what}{more}"
