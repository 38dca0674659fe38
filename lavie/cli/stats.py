"""``lavie stats MANIFEST [MANIFEST ...] --out REPORT_DIR [--label NAME ...] [--samples K] [--seed N]``."""

from __future__ import annotations

import argparse

from curation.stats.report import create_report, summary
from curation.stats.samples import DEFAULT_INDEX_CLIPS, DEFAULT_SAMPLES, DEFAULT_SEED, SampleOptions
from lavie.cli.options import add_address, add_storage_option
from lavie.core.storage import parse_storage_options
from ray_jobs.cluster import connect


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="report the statistics of curated manifests (paper section 5.1, Figs. 6-7)",
        description="Write REPORT_DIR/report.html (self-contained page with the plots) and "
        "REPORT_DIR/stats.json (every number on the page) for one or more manifests, side by side: "
        "categories, clip durations, caption lengths, aesthetic scores, resolutions, the curation "
        "funnel and totals. Beside each chart, example clips of each group with animated previews "
        "(REPORT_DIR/report_files/, decoded on Ray), and REPORT_DIR/clips.html, a sortable index of "
        "sampled clips. A MANIFEST is a curation output folder or any Parquet dataset with the "
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
    parser.add_argument(
        "--samples", type=int, default=DEFAULT_SAMPLES, metavar="K",
        help=f"example clips per group: bucket, category, reject reason, score extreme (default {DEFAULT_SAMPLES}; "
        "0: no examples, no clip index and no Ray)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED,
        help=f"seed of the random draw of examples; the same seed shows the same clips (default {DEFAULT_SEED})",
    )  # fmt: skip
    parser.add_argument(
        "--index-clips", type=int, default=DEFAULT_INDEX_CLIPS, metavar="N",
        help=f"clips listed in REPORT_DIR/clips.html, over all manifests (default {DEFAULT_INDEX_CLIPS}; 0: no index)",
    )  # fmt: skip
    add_address(parser)
    parser.set_defaults(handler=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    samples = SampleOptions(per_group=args.samples, index_clips=args.index_clips, seed=args.seed)
    options = parse_storage_options(args.storage_option) or None
    stats, report_uri, stats_uri = create_report(
        args.manifests, args.label, args.out, options, samples,
        connect=lambda: connect(args.address, log_to_driver=False),
    )  # fmt: skip
    print(summary(stats, report_uri, stats_uri))
    return 0
