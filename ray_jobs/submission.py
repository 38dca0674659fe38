"""Ray Job submission: `lavie` commands run on a cluster, their driver beside the data.

A job's entrypoint is the same `lavie` command a user runs locally (:class:`ray_jobs.spec.JobSpec`),
so a job behaves exactly like the local run. The address is the cluster's job server
(``http://head:8265``). Clusters of Ray 2.59+ use token authentication: the client sends the token
from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, and a cluster that gets
none or a wrong one refuses in one line that says so.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Callable
from typing import Any

from lavie.core.errors import UserError, message_line
from ray_jobs.auth import is_auth_failure, refused, use_token_if_present
from ray_jobs.spec import JobSpec

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
#: Right after a head starts, its job agent may not be up yet: submission retries this long.
AGENT_WAIT_SEC = 60.0


class JobClient:
    """A cluster's job server, with one-line errors."""

    def __init__(self, address: str | None) -> None:
        if not address:
            raise UserError("no cluster address: give --address http://HEAD:8265 or set RAY_API_SERVER_ADDRESS")
        self.address = address
        self._has_token = use_token_if_present()  # before Ray is imported: it reads the auth mode once
        from ray.exceptions import AuthenticationError
        from ray.job_submission import JobSubmissionClient

        try:
            self._client = JobSubmissionClient(address)
        except AuthenticationError:
            raise refused(address, self._has_token) from None
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if is_auth_failure(exc):
                raise refused(address, self._has_token) from None
            raise UserError(f"{address}: cannot reach the Ray job server ({message_line(exc)})") from None

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except RuntimeError as exc:
            if is_auth_failure(exc):
                raise refused(self.address, self._has_token) from None
            raise UserError(f"{what}: {message_line(exc)}") from None

    def submit(self, spec: JobSpec) -> str:
        """Submit, waiting out the moments after a head starts when its job agent is not up yet."""
        entrypoint = shlex.join(spec.entrypoint_argv)
        deadline = time.monotonic() + AGENT_WAIT_SEC
        while True:
            try:
                return self._client.submit_job(entrypoint=entrypoint, **spec.submit_options())
            except RuntimeError as exc:
                if "No available agent" in str(exc) and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                if is_auth_failure(exc):
                    raise refused(self.address, self._has_token) from None
                raise UserError(f"cannot submit '{entrypoint}': {message_line(exc)}") from None

    def follow(self, job_id: str, write: Callable[[str], Any]) -> str:
        """Stream the job's logs to ``write`` until it ends; returns its final status."""

        async def tail() -> None:
            async for chunk in self._client.tail_job_logs(job_id):
                write(chunk)

        self._call(f"job '{job_id}'", lambda: asyncio.run(tail()))
        status = self.status(job_id)[0]
        while status not in TERMINAL:  # logs can close a moment before the status settles
            time.sleep(0.5)
            status = self.status(job_id)[0]
        return status

    def status(self, job_id: str) -> tuple[str, str]:
        info = self._call(f"job '{job_id}'", lambda: self._client.get_job_info(job_id))
        return str(info.status), info.message or ""

    def logs(self, job_id: str) -> str:
        return self._call(f"job '{job_id}'", lambda: self._client.get_job_logs(job_id))

    def stop(self, job_id: str) -> bool:
        """Ask the job to stop; False when it had already ended."""
        return bool(self._call(f"job '{job_id}'", lambda: self._client.stop_job(job_id)))

    def wait(self, job_id: str, timeout: float, statuses: set[str] = TERMINAL) -> str:
        """Poll until the job reaches one of ``statuses`` (or ``timeout`` seconds pass)."""
        deadline = time.monotonic() + timeout
        status = self.status(job_id)[0]
        while status not in statuses and time.monotonic() < deadline:
            time.sleep(0.5)
            status = self.status(job_id)[0]
        return status

    def list(self) -> list[Any]:
        return self._call("list", self._client.list_jobs)
