"""Errors a user can fix: printed by the CLI as a single line naming the input and the problem."""


class UserError(Exception):
    """Bad input, bad config or a bad environment, reported without a traceback."""


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
