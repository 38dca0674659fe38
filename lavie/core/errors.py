"""Errors a user can fix, and how any exception becomes one line.

Every package raises :class:`UserError` (or a subclass, such as ``cascade.errors.ModelLoadError``)
for bad input, bad config or a bad environment. The `lavie` command prints it as a single line
naming the input and what is wrong, never as a traceback.
"""

from __future__ import annotations

from pydantic import ValidationError


class UserError(Exception):
    """Bad input, bad config or a bad environment, reported without a traceback."""


def message_line(value: object) -> str:
    """The first line of ``str(value)`` (its type name when empty), for messages whose context
    already says what failed."""
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


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
        what = message_line(first["msg"]).removeprefix("Value error, ")
        value = first.get("input")
        if isinstance(value, (bool, int, float, str)) and first["type"] != "value_error":
            what += f" (got {value!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {what}{more}"


def require_ray(job: str) -> None:
    """Jobs run on a Ray connection made by their caller: the cluster layer decides which cluster
    (``ray_jobs.cluster.connect``), the jobs never start or join one themselves."""
    import ray

    if not ray.is_initialized():
        raise UserError(
            f"{job} needs a Ray connection: call ray_jobs.cluster.connect(address) first (the lavie command does)"
        )
