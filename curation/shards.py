"""Shards: consecutive input videos run by one Ray task and written together, the unit of work
and of resumption.

:func:`shard_tables` turns a finished shard's rows into its clips, rejects and embeddings tables
and its counts (:class:`ShardCounts`: what the driver receives per shard, summed for ``run.json``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from curation.rows import EMBEDDING, SECONDS_PREFIX, Row
from lavie.core.manifest import CLIP_SCHEMA, REJECT_SCHEMA, embeddings_table


@dataclass
class ShardCounts:
    """What one shard produced; summed over shards for run.json."""

    inputs: int = 0
    inputs_rejected: int = 0
    clips_detected: int = 0
    clips_kept: int = 0
    clips_rejected: int = 0
    frames_decoded: int = 0
    rejects: Counter = field(default_factory=Counter)  # "stage/reason" → count
    stage_seconds: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "rejects": dict(self.rejects), "stage_seconds": dict(self.stage_seconds)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardCounts:
        data = dict(data)
        data["rejects"] = Counter(data.get("rejects", {}))
        data["stage_seconds"] = Counter(data.get("stage_seconds", {}))
        return cls(**data)

    def __iadd__(self, other: ShardCounts) -> ShardCounts:
        for key, value in other.__dict__.items():
            setattr(self, key, getattr(self, key) + value)
        return self


def _clip_record(row: Row) -> dict[str, Any]:
    return {name: row.get(name) for name in CLIP_SCHEMA.names}


def _reject_record(row: Row) -> dict[str, Any]:
    return {
        "source_uri": row["source_uri"],
        "clip_id": row.get("clip_id"),
        "start_frame": row.get("start_frame"),
        "end_frame": row.get("end_frame"),
        "num_frames": row.get("num_frames"),
        "height": row.get("height"),
        "caption": row.get("caption"),
        "stage": row["reject_stage"],
        "reason": row["reject_reason"],
        "detail": row.get("reject_detail"),
    }


def _sort_key(row: Row) -> tuple:
    return (row["source_uri"], row.get("start_frame") or -1)


def _embeddings(rows: list[Row]) -> pa.Table | None:
    """The kept clips' embeddings (from the scoring step), None when none was scored."""
    scored = [row for row in rows if row.get("reject_stage") is None and row.get(EMBEDDING)]
    if not scored:
        return None
    vectors = np.frombuffer(b"".join(row[EMBEDDING] for row in scored), dtype=np.float16).reshape(len(scored), -1)
    return embeddings_table([row["clip_id"] for row in scored], vectors)


def shard_tables(rows: list[Row]) -> tuple[pa.Table, pa.Table, ShardCounts, pa.Table | None]:
    """Split a finished shard's rows into the clips and rejects tables, in a stable order, and the
    kept clips' embeddings (None when the shard's clips were not scored)."""
    rows = sorted(rows, key=_sort_key)
    kept = [_clip_record(r) for r in rows if r.get("reject_stage") is None]
    rejected = [_reject_record(r) for r in rows if r.get("reject_stage") is not None]
    counts = ShardCounts()
    videos: dict[str, bool] = {}
    for row in rows:
        is_clip = row.get("clip_id") is not None
        videos[row["source_uri"]] = videos.get(row["source_uri"], False) or is_clip
        if row.get("reject_stage") is not None:
            counts.rejects[f"{row['reject_stage']}/{row['reject_reason']}"] += 1
        if is_clip:
            counts.clips_detected += 1
            counts.frames_decoded += int(row.get("num_frames") or 0)
        for key, value in row.items():
            if key.startswith(SECONDS_PREFIX) and value:
                counts.stage_seconds[key.removeprefix(SECONDS_PREFIX)] += float(value)
    counts.inputs = len(videos)
    counts.inputs_rejected = sum(1 for has_clips in videos.values() if not has_clips)
    counts.clips_kept = len(kept)
    counts.clips_rejected = counts.clips_detected - counts.clips_kept
    return (
        pa.Table.from_pylist(kept, schema=CLIP_SCHEMA),
        pa.Table.from_pylist(rejected, schema=REJECT_SCHEMA),
        counts,
        _embeddings(rows),
    )
