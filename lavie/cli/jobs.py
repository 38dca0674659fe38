"""`lavie jobs`: run `lavie curate` / `lavie stats` / `lavie train` on a Ray cluster as Ray Jobs.

    lavie jobs --address http://HEAD:8265 submit [--wait] [--job-id ID] [--working-dir DIR] [--pip REQ]
               [--env K=V] [--num-cpus N] [--num-gpus N] COMMAND ARGS...
    lavie jobs --address http://HEAD:8265 submit [--wait] --spec FILE
    lavie jobs --address http://HEAD:8265 status|logs [--follow]|stop [--wait] JOB_ID
    lavie jobs --address http://HEAD:8265 list
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from lavie.core.config import parse_key_value
from lavie.core.errors import UserError
from ray_jobs.spec import SUBMITTABLE, load_spec
from ray_jobs.submission import JobClient


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("jobs", help="submit lavie commands to a Ray cluster and follow them")
    p.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS"),
                   help="the cluster's job server, e.g. http://head:8265")
    sub = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")

    submit = sub.add_parser("submit", help="submit `lavie COMMAND ARGS...` (or a job spec file) as a Ray Job")
    submit.add_argument("--spec", metavar="FILE", help="a job spec (YAML/JSON: command, args, resources, runtime_env)")
    submit.add_argument("--job-id", help="a name for the job (default: the spec's, else generated)")
    submit.add_argument("--working-dir", help="a local folder shipped to the cluster as the job's working dir")
    submit.add_argument("--pip", action="append", default=[], metavar="REQ", help="pip requirement installed for the job")
    submit.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable for the job")
    submit.add_argument("--num-cpus", type=float, help="CPUs reserved for the job's driver")
    submit.add_argument("--num-gpus", type=float, help="GPUs reserved for the job's driver")
    submit.add_argument("--wait", action="store_true", help="stream the job's logs until it ends; exit 1 unless it succeeds")
    submit.add_argument("lavie_command", nargs="?", metavar="COMMAND", help=f"the lavie command to run ({', '.join(SUBMITTABLE)})")
    submit.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (paths as the cluster sees them)")

    for name, text in (("status", "a job's status"), ("logs", "a job's logs"), ("stop", "stop a job")):
        action = sub.add_parser(name, help=text)
        action.add_argument("job_id")
        if name == "logs":
            action.add_argument("--follow", action="store_true", help="stream until the job ends")
        if name == "stop":
            action.add_argument("--wait", action="store_true", help="return once the job has stopped")
    sub.add_parser("list", help="jobs on the cluster")
    p.set_defaults(handler=run)


def _spec_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Flags of `submit` as dotted keys of the job spec."""
    overrides: list[tuple[str, Any]] = []
    if args.lavie_command is not None:
        overrides += [("command", args.lavie_command), ("args", list(args.args))]
    for flag, key in (("job_id", "job_id"), ("working_dir", "runtime_env.working_dir"),
                      ("num_cpus", "resources.num_cpus"), ("num_gpus", "resources.num_gpus")):  # fmt: skip
        if getattr(args, flag) is not None:
            overrides.append((key, getattr(args, flag)))
    if args.pip:
        overrides.append(("runtime_env.pip", list(args.pip)))
    for item in args.env:
        name, value = parse_key_value(item, "--env")
        overrides.append((f"runtime_env.env_vars.{name}", value))
    return overrides


def _submit(args: argparse.Namespace) -> int:
    if args.spec and args.lavie_command is not None:
        raise UserError(f"--spec {args.spec}: give the command in the spec or on the command line, not both")
    if not args.spec and args.lavie_command is None:
        raise UserError("submit: give a COMMAND (" + ", ".join(SUBMITTABLE) + ") or --spec FILE")
    spec = load_spec(args.spec or {}, _spec_overrides(args))  # a bad spec fails before the cluster is asked
    client = JobClient(args.address)
    job_id = client.submit(spec)
    print(job_id)
    if not args.wait:
        return 0
    status = client.follow(job_id, lambda chunk: (sys.stdout.write(chunk), sys.stdout.flush()))
    print(f"lavie jobs: {job_id} {status}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def run(args: argparse.Namespace) -> int:
    action = args.jobs_command
    if action == "submit":
        return _submit(args)
    client = JobClient(args.address)
    if action == "list":
        for job in client.list():
            print(f"{job.submission_id}\t{job.status}\t{job.entrypoint}")
    elif action == "status":
        status, message = client.status(args.job_id)
        print(f"{args.job_id}\t{status}\t{message}".rstrip())
    elif action == "logs":
        if args.follow:
            client.follow(args.job_id, sys.stdout.write)
        else:
            sys.stdout.write(client.logs(args.job_id))
    elif action == "stop":
        if not client.stop(args.job_id):
            print(f"{args.job_id}\talready ended")
        elif args.wait:
            print(f"{args.job_id}\t{client.wait(args.job_id, timeout=120)}")
        else:
            print(f"{args.job_id}\tstop requested")
    return 0
