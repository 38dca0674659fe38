"""The `lavie` command: one sub-command per entry point of the platform.

This is the top layer: it parses arguments, joins or starts the Ray cluster through
``ray_jobs.cluster`` when a command has work for it, calls the packages' Python APIs and prints.
Each module named in ``COMMANDS`` exposes ``register(subparsers)``, which adds its parsers and sets
``handler`` (a callable taking the parsed namespace and returning an exit code).

Only the module of the command asked for is imported: ``generate`` pulls in diffusers and torch
(~5 s, ~1 GB), which `lavie jobs list` or a curation driver has no use for. ``lavie --help`` and an
unknown command import them all, to list every command.

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

#: command → the module that registers it, in the order ``lavie --help`` lists them.
COMMANDS = {
    "curate": "lavie.cli.curate",
    "stats": "lavie.cli.stats",
    "check": "lavie.cli.check",
    "dedup": "lavie.cli.dedup",
    "train": "lavie.cli.train",
    "jobs": "lavie.cli.jobs",
    "eval": "lavie.cli.eval",
    "generate": "lavie.cli.generate",
    "cascade": "lavie.cli.generate",
    "import-release": "lavie.cli.import_release",
}


def requested_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first argument, as `lavie` itself takes no options but -h."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``command`` alone, or of every command when it is None or not a command."""
    parser = argparse.ArgumentParser(
        prog="lavie",
        description="Curate video datasets, train and serve LaVie's cascaded video diffusion models.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module_name in modules:
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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(requested_command(argv)).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"lavie {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lavie {args.command}: interrupted", file=sys.stderr)
        return 130
