"""The `lavie` command line: one sub-command per entry point.

Each package owns its sub-commands: a module listed in ``COMMAND_MODULES`` exposes
``register(subparsers)``, which adds its parser and sets ``handler`` (a callable taking the parsed
namespace and returning an exit code). Errors the user can fix are raised as ``UserError`` and
printed as one line, never as a traceback; so are the model errors of ``cascade.errors``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cascade.errors import CascadeError
from curation.errors import UserError

COMMAND_MODULES = (
    "curation.cli",
    "curation.stats.cli",
    "training.cli",
    "ray_jobs.jobs_cli",
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (UserError, CascadeError) as exc:
        print(f"lavie {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lavie {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
