"""Ray's token authentication, as every client of a cluster here meets it: job submission and
drivers that join with ``--address``.

Clusters of Ray 2.59+ require a token by default. A client sends it only when ``RAY_AUTH_MODE=token``
is set in its process, from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``; a
cluster that gets none or a wrong one refuses, which these helpers turn into one line that says
what to set.
"""

from __future__ import annotations

import os

from lavie.core.errors import UserError


def _token_file() -> str:
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")


def use_token_if_present() -> bool:
    """Send the cluster token when this machine has one; returns whether it has.

    Ray's job client only sends it when ``RAY_AUTH_MODE=token`` is set in the client process;
    a cluster started with token auth (the default for local clusters since Ray 2.59) otherwise
    rejects every request.
    """
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or os.path.isfile(_token_file())
    if has_token and not os.environ.get("RAY_AUTH_MODE"):
        os.environ["RAY_AUTH_MODE"] = "token"
    return has_token


def refused(address: str, has_token: bool) -> UserError:
    if has_token:
        return UserError(f"{address}: the cluster refused this machine's token (set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)")
    return UserError(
        f"{address}: the cluster requires an authentication token and this machine has none "
        "(set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, or copy the head's ~/.ray/auth_token)"
    )


def is_auth_failure(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("401", "403", "unauthorized", "unauthenticated", "authentication"))
