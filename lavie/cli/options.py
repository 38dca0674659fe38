"""Options several commands share, declared once."""

from __future__ import annotations

import argparse
import os


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-option", action="append", default=[], metavar="KEY=VALUE",
        help="fsspec storage option for remote inputs and outputs, e.g. endpoint_url=http://127.0.0.1:9000 "
        "(credentials are best left to the environment or ~/.aws/credentials; given here, they are used "
        "but never written out)",
    )  # fmt: skip


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster address (default: RAY_ADDRESS, else an embedded local Ray)",
    )  # fmt: skip
