"""`lavie dedup MANIFEST --out DIR`: drop near-duplicate clips, by their CLIP embeddings, on Ray."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from curation.dedup.config import DedupConfig
from curation.dedup.run import DedupRequest, run_dedup
from lavie.cli.options import add_address, add_storage_option
from lavie.core import config as core_config
from lavie.core.storage import parse_storage_options
from ray_jobs.cluster import connect


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dedup",
        help="remove near-duplicate clips (k-means on CLIP embeddings, cosine similarity within clusters)",
        description="Cluster the clips' CLIP image embeddings with distributed mini-batch k-means, compare clips "
        "within each cluster, and keep one clip of every group at or above --threshold (highest aesthetic score, "
        "then longest, then first clip_id). Writes a manifest under --out like curation's: clips/, embeddings/, "
        "rejects/ (the duplicates under stage 'dedup', with duplicate_of), run.json, _SUCCESS.",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="curation output (with embeddings/) or Parquet clip manifest")
    p.add_argument("--out", required=True, help="output folder (local path or fsspec URL); must be new or empty")
    p.add_argument("--embeddings", help="folder of embeddings files named like MANIFEST's clips/ parts "
                   "(default: MANIFEST/embeddings, written by curation's scoring step)")  # fmt: skip
    p.add_argument("--threshold", type=float, help="cosine similarity at or above which clips are duplicates (0.95)")
    p.add_argument("--cluster-size", type=int, help="embeddings per k-means cluster on average (10000)")
    p.add_argument("--iterations", type=int, help="mini-batch k-means iterations (20)")
    p.add_argument("--seed", type=int, help="random seed of the k-means (0)")
    add_address(p)
    add_storage_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = {key: getattr(args, key) for key in ("threshold", "cluster_size", "iterations", "seed")}
    config = core_config.validate(DedupConfig, {k: v for k, v in settings.items() if v is not None}, "dedup options")
    request = DedupRequest(
        manifest=args.manifest, out=args.out, embeddings=args.embeddings, config=config,
        storage_options=parse_storage_options(args.storage_option) or None,
    )  # fmt: skip
    console = Console(stderr=True)
    record = run_dedup(
        request,
        connect=lambda: connect(args.address, log_to_driver=False),
        on_stage=None if args.quiet else lambda stage: console.print(f"dedup: {stage}", highlight=False),
    )
    dedup = record["dedup"]
    print(json.dumps({
        "out": args.out, "clips_in": dedup["clips_in"], "duplicates": dedup["duplicates"],
        "clips_kept": record["counts"]["clips_kept"], "clusters": dedup["clusters"],
    }))  # fmt: skip
    return 0
