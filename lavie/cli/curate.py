"""`lavie curate`: raw videos (+ metadata) → curated single-scene clips in Parquet manifests."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from curation.config import load_config
from curation.pipeline import CurationRequest, prepare, run_curation
from curation.shards import ShardCounts
from lavie.cli.options import add_address, add_storage_option
from lavie.core.storage import parse_storage_options
from ray_jobs.cluster import connect

# CLI flag → dotted config key; flags override the --config file.
FLAG_TO_KEY = {
    "detector": "scenes.detector",
    "threshold": "scenes.threshold",
    "min_frames": "filters.min_frames",
    "min_caption_words": "filters.min_caption_words",
    "min_height": "filters.min_height",
    "clip_model": "scoring.clip_model",
    "clip_checkpoint": "scoring.clip_checkpoint",
    "aesthetic_mlp": "scoring.aesthetic_mlp",
    "min_motion": "motion.min_motion",
    "max_motion": "motion.max_motion",
    "overlay_model": "overlay.model",
    "overlay_label": "overlay.label",
    "overlay_threshold": "overlay.threshold",
    "videos_per_shard": "videos_per_shard",
    "source_dataset": "source_dataset",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "curate",
        help="split raw videos into curated single-scene clips (Parquet manifests)",
        description="Probe, scene-split, filter and score videos on Ray Data; write clips/, rejects/, "
        "run.json and _SUCCESS under --out. Re-running resumes an interrupted job.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="video files, folders, globs or fsspec URLs (listed as they are walked)")
    p.add_argument(
        "--inputs-from", metavar="LISTING",
        help="Parquet/CSV/JSONL listing with a 'video' URI column and optional caption, category, source_dataset, "
        "start_sec, end_sec (a video's timed caption rows together); read shard by shard",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (local path or fsspec URL)")
    p.add_argument("--metadata", help="CSV/JSONL/Parquet with columns video, caption[, category, source_dataset, start_sec, end_sec] for INPUT paths")
    p.add_argument("--config", help="YAML/JSON curation config (see curation/config.py)")
    add_address(p)
    add_storage_option(p)
    p.add_argument("--detector", choices=["content", "adaptive"])
    p.add_argument("--threshold", type=float, help="ContentDetector threshold")
    p.add_argument("--min-frames", type=int)
    p.add_argument("--min-caption-words", type=int)
    p.add_argument("--min-height", type=int)
    p.add_argument("--clip-model", help="open_clip model name or model-config JSON path")
    p.add_argument("--clip-checkpoint", help="local open_clip weights")
    p.add_argument("--aesthetic-mlp", help="local aesthetic predictor state dict")
    p.add_argument("--min-motion", type=float, help="reject clips whose motion score is lower (NeMo Curator uses 0.00098)")
    p.add_argument("--max-motion", type=float, help="reject clips whose motion score is higher")
    p.add_argument("--overlay-model", help="local transformers image-classification folder for overlaid text/watermarks")
    p.add_argument("--overlay-label", help="the overlay model's label for text or a watermark")
    p.add_argument("--overlay-threshold", type=float, help="reject clips whose overlay_score is at or above it (0.5)")
    p.add_argument("--videos-per-shard", type=int, help="videos per Ray task and per output part (the unit of resumption)")
    p.add_argument("--source-dataset", help="source_dataset value for videos whose metadata gives none")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def print_summary(console: Console, record: dict[str, Any], wall: float) -> None:
    counts = record["counts"]
    table = Table(title="curation summary", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("inputs", str(counts["inputs"]))
    table.add_row("inputs rejected", str(counts["inputs_rejected"]))
    table.add_row("clips detected", str(counts["clips_detected"]))
    table.add_row("clips kept", str(counts["clips_kept"]))
    table.add_row("clips rejected", str(counts["clips_rejected"]))
    for stage, reasons in record["rejects_by_stage"].items():
        for reason, n in reasons.items():
            table.add_row(f"  rejected at {stage}: {reason}", str(n))
    if wall > 0 and not record.get("already_complete"):
        table.add_row("throughput (this run)", f"{counts['inputs'] / wall:.2f} videos/s, "
                      f"{counts['frames_decoded'] / wall:.0f} frames/s")
    console.print(table)
    if not record["scoring"]["aesthetic"]:
        console.print(f"[yellow]scoring skipped:[/] {record['scoring']['skipped_reason']}")


def run(args: argparse.Namespace) -> int:
    overrides = {key: getattr(args, flag) for flag, key in FLAG_TO_KEY.items() if getattr(args, flag) is not None}
    request = CurationRequest(
        inputs=tuple(args.inputs),
        out=args.out,
        metadata=args.metadata,
        config=load_config(args.config, overrides),
        storage_options=parse_storage_options(args.storage_option) or None,
        inputs_from=args.inputs_from,
    )
    plan = prepare(request)  # bad inputs and metadata fail here, before any cluster starts
    console = Console(stderr=True)
    started = time.perf_counter()
    with Progress(
        TextColumn("curating"), BarColumn(), MofNCompleteColumn(), TextColumn("videos ·"),
        TextColumn("{task.fields[kept]} clips kept"), TimeElapsedColumn(),
        console=console, disable=args.quiet, transient=True,
    ) as progress:
        task = progress.add_task("curate", total=None, kept=0)

        def on_progress(done: int, total: int, counts: ShardCounts) -> None:
            progress.update(task, completed=done, total=total, kept=counts.clips_kept)

        record = run_curation(request, on_progress, plan=plan, connect=lambda: connect(args.address))
    if record.get("already_complete"):
        console.print(f"{args.out}: already complete, nothing to do")
    print_summary(console, record, time.perf_counter() - started)
    print(json.dumps({"out": args.out, "clips_kept": record["counts"]["clips_kept"]}))
    return 0
