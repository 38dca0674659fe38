"""A shard's Ray task: read its listing, run the steps, write its parts and marker.

The driver sends a shard number and gets back the shard's counts (a few numbers); every row stays
on the worker. A shard whose marker exists is done: its task returns the recorded counts without
running anything, so a re-run after a killed driver only works on what is left, and Ray's retry
of a killed worker's task rewrites the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from curation.config import CurationConfig
from curation.executor import ModelPools, run_steps
from curation.metadata import VideoMetadata
from curation.output import INPUT_REJECTS, OutputDir
from curation.rows import METADATA, Row, mark_rejected, new_row
from curation.steps import INPUT_STAGE, StepContext


@dataclass(frozen=True)
class ShardJob:
    """What every shard task of a run shares."""

    out: str
    config: CurationConfig
    context: StepContext
    video_shards: int  # shards numbered from here on hold the inputs rejected before any step


def _video_rows(listing: pa.Table, config: CurationConfig) -> list[Row]:
    rows = []
    for uri, record in zip(listing.column("video").to_pylist(), listing.column("metadata").to_pylist()):
        meta = VideoMetadata.from_record(json.loads(record))
        source_dataset = meta.source_dataset or config.source_dataset
        rows.append(new_row(source_uri=uri, source_dataset=source_dataset, category=meta.category, **{METADATA: record}))
    return rows


def _input_reject_rows(listing: pa.Table) -> list[Row]:
    return [
        mark_rejected(new_row(source_uri=row["source_uri"]), INPUT_STAGE, row["reason"], row["detail"])
        for row in listing.to_pylist()
    ]


def run_shard(shard: int, job: ShardJob, pools: ModelPools | None) -> dict[str, Any]:
    """Run one shard (or return the counts it recorded when it ran before)."""
    out = OutputDir(job.out, job.context.storage_options())
    recorded = out.shard_counts(shard)
    if recorded is not None:
        return recorded.to_json()
    if shard >= job.video_shards:
        rows = _input_reject_rows(out.read_listing(INPUT_REJECTS))
    else:
        videos = _video_rows(out.read_listing(f"shard-{shard:05d}.parquet"), job.config)
        rows = run_steps(videos, job.config, job.context, pools, offset=shard)
    return out.write_shard(shard, rows).to_json()
