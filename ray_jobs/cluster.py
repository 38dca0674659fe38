"""Connecting the driver to Ray: a given cluster, or an embedded local one started here.

This is the cluster layer's job alone: the platform's jobs (curation, training, ...) never join or
start a cluster, they run on the connection their caller made. The `lavie` command, the demo and
the tests go through :func:`connect`, so ``--address`` / ``RAY_ADDRESS`` mean the same everywhere
and a process shares one cluster.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lavie.core.errors import UserError, message_line
from ray_jobs.auth import is_auth_failure, refused, use_token_if_present


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def start_local_ray(num_cpus: int | None = None, **kwargs: Any) -> str:
    """Start an embedded local Ray and return its GCS address.

    ``address="local"``: with ``None``, Ray joins whatever cluster ``/tmp/ray/ray_current_cluster``
    names (the last one started on this machine, by anyone, dead or alive) and can wait for it
    forever. The GCS port is chosen here and exported as ``RAY_ADDRESS`` before the start, so that
    every Ray process of this cluster inherits it: Ray Train's placement-group cleaner looks the
    controller up through ``RAY_ADDRESS`` (else through that same file), and on another live
    cluster would find no controller and remove a training run's placement group.
    """
    import ray

    port = _free_port()
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)
    os.environ["RAY_ADDRESS"] = f"{ray.util.get_node_ip_address()}:{port}"
    kwargs.setdefault("logging_level", logging.WARNING)
    # The placement-group cleaner queries the State API, which the dashboard serves; on a port of its own.
    kwargs.setdefault("include_dashboard", True)
    if kwargs["include_dashboard"]:
        kwargs.setdefault("dashboard_port", _free_port())
    try:
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
    finally:
        os.environ.pop("RAY_GCS_SERVER_PORT", None)  # read at start-up only; must not reach other clusters
    address = ray.get_runtime_context().gcs_address
    os.environ["RAY_ADDRESS"] = address
    return address


def connect(address: str | None, **kwargs: Any) -> None:
    """Join the cluster at ``address`` (``ray://``, ``host:port`` or ``auto``), or start an embedded
    local Ray when it is None. A process already connected stays on its cluster."""
    import ray

    if ray.is_initialized():
        return
    kwargs.setdefault("logging_level", logging.WARNING)
    if address is None:
        start_local_ray(**kwargs)
    else:
        join_cluster(address, **kwargs)
    quiet_ray_data()


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a plain ``host:port`` GCS address; None for ``ray://``, ``auto`` and the like."""
    if "://" in address or address.count(":") != 1:
        return None
    host, port = address.rsplit(":", 1)
    return (host, int(port)) if port.isdigit() else None


@contextmanager
def _held_back_stderr() -> Iterator[Any]:
    """File descriptor 2 into a temporary file for the duration: Ray's C++ client logs every retry
    of a refused join there directly (one line a second), which would bury the one-line error."""
    held = tempfile.TemporaryFile()
    saved = os.dup(2)
    os.dup2(held.fileno(), 2)
    try:
        yield held
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def join_cluster(address: str, **kwargs: Any) -> None:
    """``ray.init(address)`` with one-line errors: nothing listening there is found at once (Ray
    itself retries for a while), and a refusal for want of a token says what to set. The `lavie`
    command calls :func:`ray_jobs.auth.use_token_if_present` before anything imports Ray (Ray reads
    the auth mode once); here it covers other callers."""
    has_token = use_token_if_present()
    import ray

    target = _host_port(address)
    if target is not None:
        try:
            socket.create_connection(target, timeout=5).close()
        except OSError as exc:
            raise UserError(
                f"{address}: nothing answers there ({message_line(exc)}); give the head's GCS address "
                "(host:6379, as `ray start --head` prints it), ray://host:10001, or start the cluster"
            ) from None
    with _held_back_stderr() as held:
        try:
            ray.init(address=address, **kwargs)
            failure = None
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ... for a refused join
            failure = exc
        held.seek(0)
        logged = held.read().decode(errors="replace")
    if failure is None:
        sys.stderr.write(logged)  # a join that worked hides nothing Ray said
        return
    if is_auth_failure(failure) or any(word in logged for word in ("InvalidAuthToken", "Unauthenticated")):
        raise refused(address, has_token) from None
    raise UserError(f"{address}: cannot join the Ray cluster ({message_line(failure)})") from None


def quiet_ray_data() -> None:
    """No Ray Data progress bars or per-operator logs: the `lavie` commands draw their own progress."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
