"""The curation output folder, and how a run resumes after its driver or a worker was killed.

Layout (the manifest readers see only ``clips/``, ``rejects/``, ``run.json`` and ``_SUCCESS``)::

    _progress/plan.json                  the run's fingerprint (listing digest and counts, config)
    _progress/listing/shard-SSSSS.parquet  the shard's input videos and their metadata (the planner)
    _progress/listing/input-rejects.parquet  inputs rejected before any video is opened
    clips/part-SSSSS.parquet             a shard's kept clips      (written by the shard's worker)
    rejects/part-SSSSS.parquet           a shard's rejects         (written by the shard's worker)
    embeddings/part-SSSSS.parquet        its kept clips' CLIP embeddings, when they were scored
    _progress/shard-SSSSS.json           the shard's counts: written last, it marks the shard done

A worker writes its shard's parts and then its marker, each atomically
(:func:`lavie.core.storage.atomic_write`), under names fixed by the shard number; a shard run
again (a re-run, or Ray retrying a killed worker's task) rewrites the same names, so nothing is
lost or duplicated. ``plan.json`` is written once the listing is complete; a re-run re-plans
without writing and refuses other inputs or config. ``run.json`` and finally ``_SUCCESS`` are
written when every shard is done.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.rows import Row
from curation.shards import ShardCounts, shard_tables
from lavie.core.errors import UserError
from lavie.core.manifest import CLIPS_DIR, EMBEDDINGS_DIR, REJECTS_DIR, RUN_FILE, SUCCESS_FILE
from lavie.core.storage import atomic_write, atomic_write_json, filesystem, join, read_json

PROGRESS_DIR = "_progress"
LISTING_DIR = "listing"
INPUT_REJECTS = "input-rejects.parquet"
#: The layout this code writes; plan.json of runs started before shards were planned into
#: listing files has no "layout" (it listed every input instead).
LAYOUT = 2


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


class OutputDir:
    """A curation output folder on any fsspec filesystem."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url
        self.options = storage_options
        self.fs, self.root = filesystem(url, storage_options)

    def uri(self, *parts: str) -> str:
        return join(self.url, *parts)

    def _exists(self, *parts: str) -> bool:
        return self.fs.exists(posixpath.join(self.root, *parts))

    def is_complete(self) -> bool:
        return self._exists(SUCCESS_FILE)

    # ------------------------------------------------------------------ the plan
    def recorded_plan(self) -> dict[str, Any] | None:
        """The fingerprint of the run already here (None for a new folder); refuses a folder that
        holds something else, or a run of the earlier layout, in one line."""
        if not self._exists(PROGRESS_DIR, "plan.json"):
            if self._exists(CLIPS_DIR) or self._exists(RUN_FILE):
                raise UserError(f"{self.url}: holds files of another tool or run; give an empty --out folder")
            return None
        plan = read_json(self.uri(PROGRESS_DIR, "plan.json"), self.options)
        if plan.get("layout") != LAYOUT:
            if self.is_complete():
                raise UserError(
                    f"{self.url}: holds a finished run of an earlier lavie (its clips/ and rejects/ read as they "
                    "are); to curate again, give a new --out"
                )
            raise UserError(
                f"{self.url}: holds an unfinished run of an earlier lavie, which kept one list of every input "
                "instead of shard listings, so it cannot resume here; finish it with that version or give a new --out"
            )
        return plan

    def check_plan(self, recorded: dict[str, Any], fingerprint: dict[str, Any]) -> None:
        if recorded != json.loads(json.dumps(fingerprint, default=str)):
            state = "a finished" if self.is_complete() else "an unfinished"
            raise UserError(
                f"{self.url}: holds {state} run with other inputs or config; give a new --out or remove the folder"
            )

    def record_plan(self, fingerprint: dict[str, Any]) -> None:
        atomic_write_json(self.uri(PROGRESS_DIR, "plan.json"), fingerprint, self.options)

    def listing_uri(self, name: str) -> str:
        return self.uri(PROGRESS_DIR, LISTING_DIR, name)

    def clear_listing(self) -> None:
        """Remove the listing files of a planning pass that did not finish."""
        path = posixpath.join(self.root, PROGRESS_DIR, LISTING_DIR)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def read_listing(self, name: str) -> pa.Table:
        with self.fs.open(posixpath.join(self.root, PROGRESS_DIR, LISTING_DIR, name), "rb") as handle:
            return pq.read_table(handle)

    # ------------------------------------------------------------------ shards
    def _marker(self, shard: int) -> str:
        return self.uri(PROGRESS_DIR, f"shard-{shard:05d}.json")

    def shard_counts(self, shard: int) -> ShardCounts | None:
        """The counts of a finished shard, or None while it is not done."""
        try:
            return ShardCounts.from_json(read_json(self._marker(shard), self.options))
        except FileNotFoundError:
            return None

    def write_shard(self, shard: int, rows: list[Row]) -> ShardCounts:
        """Write a shard's parts, then its marker (the shard is done once the marker exists)."""
        clips, rejects, counts, embeddings = shard_tables(rows)
        name = f"part-{shard:05d}.parquet"
        parts = [(CLIPS_DIR, clips), (REJECTS_DIR, rejects)]
        if embeddings is not None:
            parts.append((EMBEDDINGS_DIR, embeddings))
        for folder, table in parts:
            atomic_write(self.uri(folder, name), parquet_bytes(table), self.options)
        atomic_write_json(self._marker(shard), counts.to_json(), self.options)
        return counts

    # ------------------------------------------------------------------ the end
    def finish(self, run: dict[str, Any]) -> None:
        atomic_write_json(self.uri(RUN_FILE), run, self.options)
        atomic_write(self.uri(SUCCESS_FILE), b"", self.options)

    def read_run(self) -> dict[str, Any]:
        return read_json(self.uri(RUN_FILE), self.options)
