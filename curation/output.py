"""The curation output folder, and how a run resumes after its driver was killed.

Work is split into shards of consecutive input videos. A shard's kept clips and rejects go to
``clips/part-SSSSS.parquet`` and ``rejects/part-SSSSS.parquet`` (names fixed by the shard number),
then ``_progress/shard-SSSSS.json`` records the shard as done with its counts. A re-run skips done
shards and rewrites the others under the same names, so an interrupted shard is neither lost nor
duplicated. ``_progress/plan.json`` fingerprints the inputs and config: resuming with other
arguments is refused. ``run.json`` and finally ``_SUCCESS`` are written when every shard is done.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from curation.errors import UserError
from curation.inputs import filesystem_for
from curation.rows import SECONDS_PREFIX, Row
from curation.schema import (
    CLIP_SCHEMA,
    CLIPS_DIR,
    REJECT_SCHEMA,
    REJECTS_DIR,
    RUN_FILE,
    SUCCESS_FILE,
)

PROGRESS_DIR = "_progress"


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


def shard_tables(rows: list[Row]) -> tuple[pa.Table, pa.Table, ShardCounts]:
    """Split a finished shard's rows into the clips and rejects tables, in a stable order."""
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
    )


class OutputDir:
    """A curation output folder on any fsspec filesystem."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url
        self.fs, self.root = filesystem_for(url, storage_options)

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def is_complete(self) -> bool:
        return self.fs.exists(self._path(SUCCESS_FILE))

    def _write_bytes(self, path: str, data: bytes) -> None:
        """Write so that a reader (or a resumed run) never sees a half-written file under ``path``."""
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        if isinstance(self.fs, LocalFileSystem):
            tmp = self._path(PROGRESS_DIR, f".tmp-{uuid.uuid4().hex}")
            self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
            self.fs.mv(tmp, path)
        else:  # object stores make a single PUT visible atomically
            with self.fs.open(path, "wb") as f:
                f.write(data)

    def _write_json(self, path: str, data: dict[str, Any]) -> None:
        self._write_bytes(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode())

    def _read_json(self, path: str) -> dict[str, Any]:
        with self.fs.open(path, "rb") as f:
            return json.loads(f.read())

    def begin(self, fingerprint: dict[str, Any]) -> None:
        """Record the run's plan, or check that a run already here had the same one."""
        plan_path = self._path(PROGRESS_DIR, "plan.json")
        if self.fs.exists(plan_path):
            if self._read_json(plan_path) != json.loads(json.dumps(fingerprint, default=str)):
                state = "a finished" if self.is_complete() else "an unfinished"
                raise UserError(
                    f"{self.url}: holds {state} run with other inputs or config; "
                    "give a new --out or remove the folder"
                )
            return
        if self.fs.exists(self._path(CLIPS_DIR)) or self.fs.exists(self._path(RUN_FILE)):
            raise UserError(f"{self.url}: holds files of another tool or run; give an empty --out folder")
        self._write_json(plan_path, fingerprint)

    def done_shards(self) -> set[int]:
        pattern = self._path(PROGRESS_DIR, "shard-*.json")
        return {int(posixpath.basename(p)[6:11]) for p in self.fs.glob(pattern)}

    def write_shard(self, shard: int, rows: list[Row]) -> ShardCounts:
        clips, rejects, counts = shard_tables(rows)
        name = f"part-{shard:05d}.parquet"
        for folder, table in ((CLIPS_DIR, clips), (REJECTS_DIR, rejects)):
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            self._write_bytes(self._path(folder, name), sink.getvalue().to_pybytes())
        self._write_json(self._path(PROGRESS_DIR, f"shard-{shard:05d}.json"), counts.to_json())
        return counts

    def total_counts(self) -> ShardCounts:
        total = ShardCounts()
        for path in sorted(self.fs.glob(self._path(PROGRESS_DIR, "shard-*.json"))):
            total += ShardCounts.from_json(self._read_json(path))
        return total

    def finish(self, run: dict[str, Any]) -> None:
        self._write_json(self._path(RUN_FILE), run)
        self._write_bytes(self._path(SUCCESS_FILE), b"")

    def read_run(self) -> dict[str, Any]:
        return self._read_json(self._path(RUN_FILE))
