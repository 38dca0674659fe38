"""The `lavie` command: one sub-command per entry point of the platform.

This is the top layer: it parses arguments, joins or starts the Ray cluster through
``ray_jobs.cluster`` when a command has work for it, calls the packages' Python APIs and prints.
Each module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its parser
and sets ``handler`` (a callable taking the parsed namespace and returning an exit code).

Errors a user can fix (:class:`~lavie.core.errors.UserError`, which the cascade's model errors
also are) print as one line, never as a traceback. Credentials given on the command line are
removed from the process title before anything else runs, so that Ray, which records a driver's
command line as its job's entrypoint, never sees them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lavie.core.errors import UserError
from lavie.core.storage import redact_command_line
from ray_jobs.auth import use_token_if_present

COMMAND_MODULES = (
    "lavie.cli.curate",
    "lavie.cli.stats",
    "lavie.cli.check",
    "lavie.cli.train",
    "lavie.cli.jobs",
    "lavie.cli.eval",
    "lavie.cli.generate",
    "lavie.cli.import_release",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lavie",
        description="Curate video datasets, train and serve LaVie's cascaded video diffusion models.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def hide_credentials() -> None:
    """Replace this process's title by its command line with credential values masked."""
    redacted = redact_command_line(sys.argv)
    if redacted != sys.argv:
        import setproctitle

        setproctitle.setproctitle(" ".join(redacted))


def main(argv: Sequence[str] | None = None) -> int:
    hide_credentials()
    use_token_if_present()  # before any sub-command imports Ray, which reads the auth mode once
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"lavie {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lavie {args.command}: interrupted", file=sys.stderr)
        return 130
