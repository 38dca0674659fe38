"""`lavie check MANIFEST... --out REPORT_DIR`: decode every clip as the trainer would; report failures."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curation.check import FAILURES_FILE, CheckRequest, run_check, summary_lines
from lavie.cli.options import add_address, add_storage_option
from lavie.core.storage import join, parse_storage_options
from ray_jobs.cluster import connect


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="decode every clip of clip manifests as the trainer does, and report the failures",
        description="For each clip (a frame range, a time range, or a whole video) of any clip manifest, open "
        "its video with the training stream's reader and decode its frames. Writes REPORT_DIR/failures.parquet "
        "(one row per failed clip: reason, detail) and REPORT_DIR/summary.json. Exits 1 when a clip fails.",
    )
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="curation output or Parquet dataset with source_uri")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder (or URL) for the report")
    p.add_argument("--frames", choices=["all", "ends"], default="all",
                   help="decode every frame of each clip (default), or its first, middle and last")  # fmt: skip
    add_address(p)
    add_storage_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    request = CheckRequest(
        manifests=tuple(args.manifests),
        out=args.out,
        frames=args.frames,
        storage_options=parse_storage_options(args.storage_option) or None,
    )
    console = Console(stderr=True)
    with Progress(
        TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TextColumn("manifest parts"), TimeElapsedColumn(),
        console=console, disable=args.quiet, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("check", total=None)
        record = run_check(
            request,
            connect=lambda: connect(args.address, log_to_driver=False),
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for line in summary_lines(record):
        console.print(line, highlight=False)
    failed = sum(record["failed"].values())
    print(json.dumps({"report": join(args.out, FAILURES_FILE), "clips": record["clips"], "failed": failed}))
    return 1 if failed else 0
