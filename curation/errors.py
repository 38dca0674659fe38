"""Errors a user can fix: printed by the CLI as a single line naming the input and the problem."""


class UserError(Exception):
    """Bad input, bad config or a bad environment, reported without a traceback."""
