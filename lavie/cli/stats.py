"""``lavie stats MANIFEST [MANIFEST ...] --out REPORT_DIR [--label NAME ...]``."""

from __future__ import annotations

import argparse

from curation.stats.report import create_report, summary
from lavie.cli.options import add_storage_option
from lavie.core.storage import parse_storage_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="report the statistics of curated manifests (paper section 5.1, Figs. 6-7)",
        description="Write REPORT_DIR/report.html (self-contained page with the plots) and "
        "REPORT_DIR/stats.json (every number on the page) for one or more manifests, side by side: "
        "categories, clip durations, caption lengths, aesthetic scores, resolutions, the curation "
        "funnel and totals. A MANIFEST is a curation output folder or any Parquet dataset with the "
        "clip columns, as a local path or fsspec URL (s3:// settings from --storage-option or the environment).",
    )
    parser.add_argument("manifests", nargs="+", metavar="MANIFEST", help="curation output or Parquet dataset")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder (or URL) to write the report to")
    add_storage_option(parser)
    parser.add_argument(
        "--label",
        action="append",
        metavar="NAME",
        help="name of each MANIFEST in the report, once per MANIFEST in the same order (default: its folder name)",
    )
    parser.set_defaults(handler=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    options = parse_storage_options(args.storage_option) or None
    stats, report_uri, stats_uri = create_report(args.manifests, args.label, args.out, options)
    print(summary(stats, report_uri, stats_uri))
    return 0
