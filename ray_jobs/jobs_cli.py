"""`lavie jobs`: run `lavie curate` / `lavie train` / `lavie stats` on a Ray cluster as Ray Jobs.

The job's entrypoint is the same `lavie` command a user runs locally, so a job behaves exactly like
the local run, only its driver lives on the cluster. The address is the cluster's job server
(`http://head:8265`, or `RAY_API_SERVER_ADDRESS` / `RAY_ADDRESS`). Ray's JobSubmissionClient adds
the cluster's auth token (Ray 2.59+ token authentication) from `RAY_AUTH_TOKEN` or
`~/.ray/auth_token`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from curation.errors import UserError

SUBMITTABLE = ("curate", "train", "stats")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("jobs", help="submit lavie commands to a Ray cluster and follow them")
    p.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS"),
                   help="the cluster's job server, e.g. http://head:8265")
    sub = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")

    submit = sub.add_parser("submit", help="submit `lavie COMMAND ARGS...` as a Ray Job")
    submit.add_argument("--job-id", help="a name for the job (default: generated)")
    submit.add_argument("--working-dir", help="a local folder shipped to the cluster as the job's working dir")
    submit.add_argument("--pip", action="append", default=[], metavar="REQ", help="pip requirement installed for the job")
    submit.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable for the job")
    submit.add_argument("--wait", action="store_true", help="stream the job's logs until it ends; exit 1 unless it succeeds")
    submit.add_argument("lavie_command", choices=SUBMITTABLE, metavar="{" + ",".join(SUBMITTABLE) + "}",
                        help="the lavie command to run")
    submit.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (paths as the cluster sees them)")

    for name, text in (("status", "a job's status"), ("logs", "a job's logs"), ("stop", "stop a job")):
        action = sub.add_parser(name, help=text)
        action.add_argument("job_id")
        if name == "logs":
            action.add_argument("--follow", action="store_true", help="stream until the job ends")
    sub.add_parser("list", help="jobs on the cluster")
    p.set_defaults(handler=run)


def _use_token_if_present() -> None:
    """Send the cluster token when one is on this machine.

    Ray's job client only sends it when ``RAY_AUTH_MODE=token`` is set in the client process;
    a cluster started with token auth (the default for local clusters since Ray 2.59) otherwise
    rejects every request.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(token_file):
        os.environ["RAY_AUTH_MODE"] = "token"


def _client(address: str | None):
    if not address:
        raise UserError("no cluster address: give --address http://HEAD:8265 or set RAY_API_SERVER_ADDRESS")
    _use_token_if_present()  # before Ray is imported: it reads the auth mode once, on import
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError:
        raise UserError(
            f"{address}: the cluster refused this machine's token (set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
        ) from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"{address}: cannot reach the Ray job server ({str(exc).splitlines()[0]})") from None


def _runtime_env(args: argparse.Namespace) -> dict:
    env: dict = {}
    if args.working_dir:
        env["working_dir"] = args.working_dir
    if args.pip:
        env["pip"] = list(args.pip)
    if args.env:
        pairs = [item.partition("=") for item in args.env]
        bad = [k for k, sep, _ in pairs if not sep or not k]
        if bad:
            raise UserError(f"--env '{args.env[0]}': expected KEY=VALUE")
        env["env_vars"] = {k: v for k, _, v in pairs}
    return env


AGENT_WAIT_SEC = 60.0


def _submit(client, entrypoint: str, job_id: str | None, runtime_env: dict | None) -> str:
    """Submit, waiting out the moments after a head starts when its job agent is not up yet."""
    deadline = time.monotonic() + AGENT_WAIT_SEC
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, submission_id=job_id, runtime_env=runtime_env)
        except RuntimeError as exc:
            message = str(exc).splitlines()[0]
            if "No available agent" in message and time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            raise UserError(f"cannot submit '{entrypoint}': {message}") from None


def _follow(client, job_id: str) -> str:
    """Stream the job's logs to stdout until it ends; returns its final status."""
    import asyncio

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(tail())
    status = str(client.get_job_status(job_id))
    while status not in TERMINAL:  # logs can close a moment before the status settles
        time.sleep(0.5)
        status = str(client.get_job_status(job_id))
    return status


def run(args: argparse.Namespace) -> int:
    client = _client(args.address)
    action = args.jobs_command
    if action == "submit":
        entrypoint = shlex.join(["lavie", args.lavie_command, *args.args])
        job_id = _submit(client, entrypoint, args.job_id, _runtime_env(args) or None)
        print(job_id)
        if args.wait:
            status = _follow(client, job_id)
            print(f"lavie jobs: {job_id} {status}", file=sys.stderr)
            return 0 if status == "SUCCEEDED" else 1
        return 0
    if action == "list":
        for job in client.list_jobs():
            print(f"{job.submission_id}\t{job.status}\t{job.entrypoint}")
        return 0
    try:
        if action == "status":
            info = client.get_job_info(args.job_id)
            print(f"{args.job_id}\t{info.status}\t{info.message or ''}".rstrip())
        elif action == "logs":
            if args.follow:
                _follow(client, args.job_id)
            else:
                sys.stdout.write(client.get_job_logs(args.job_id))
        elif action == "stop":
            print(f"{args.job_id}\t{'stop requested' if client.stop_job(args.job_id) else 'already ended'}")
    except RuntimeError as exc:
        raise UserError(f"job '{args.job_id}': {str(exc).splitlines()[0]}") from None
    return 0
