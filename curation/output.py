"""The curation output folder, and how a run resumes after its driver was killed.

Work is split into shards of consecutive input videos (:mod:`curation.shards`). A shard's kept
clips and rejects go to ``clips/part-SSSSS.parquet`` and ``rejects/part-SSSSS.parquet`` (names
fixed by the shard number), then ``_progress/shard-SSSSS.json`` records the shard as done with its
counts. A re-run skips done shards and rewrites the others under the same names, so an interrupted
shard is neither lost nor duplicated. ``_progress/plan.json`` fingerprints the inputs and config:
resuming with other arguments is refused. ``run.json`` and finally ``_SUCCESS`` are written when
every shard is done. Every file is written atomically (:func:`lavie.core.storage.atomic_write`).
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
from lavie.core.manifest import CLIPS_DIR, REJECTS_DIR, RUN_FILE, SUCCESS_FILE
from lavie.core.storage import atomic_write, atomic_write_json, filesystem, join, read_json

PROGRESS_DIR = "_progress"


class OutputDir:
    """A curation output folder on any fsspec filesystem."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url
        self.options = storage_options
        self.fs, self.root = filesystem(url, storage_options)

    def _uri(self, *parts: str) -> str:
        return join(self.url, *parts)

    def _exists(self, *parts: str) -> bool:
        return self.fs.exists(posixpath.join(self.root, *parts))

    def is_complete(self) -> bool:
        return self._exists(SUCCESS_FILE)

    def begin(self, fingerprint: dict[str, Any]) -> None:
        """Record the run's plan, or check that a run already here had the same one."""
        if self._exists(PROGRESS_DIR, "plan.json"):
            if read_json(self._uri(PROGRESS_DIR, "plan.json"), self.options) != json.loads(json.dumps(fingerprint, default=str)):
                state = "a finished" if self.is_complete() else "an unfinished"
                raise UserError(
                    f"{self.url}: holds {state} run with other inputs or config; "
                    "give a new --out or remove the folder"
                )
            return
        if self._exists(CLIPS_DIR) or self._exists(RUN_FILE):
            raise UserError(f"{self.url}: holds files of another tool or run; give an empty --out folder")
        atomic_write_json(self._uri(PROGRESS_DIR, "plan.json"), fingerprint, self.options)

    def done_shards(self) -> set[int]:
        pattern = posixpath.join(self.root, PROGRESS_DIR, "shard-*.json")
        return {int(posixpath.basename(p)[6:11]) for p in self.fs.glob(pattern)}

    def write_shard(self, shard: int, rows: list[Row]) -> ShardCounts:
        clips, rejects, counts = shard_tables(rows)
        name = f"part-{shard:05d}.parquet"
        for folder, table in ((CLIPS_DIR, clips), (REJECTS_DIR, rejects)):
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            atomic_write(self._uri(folder, name), sink.getvalue().to_pybytes(), self.options)
        atomic_write_json(self._uri(PROGRESS_DIR, f"shard-{shard:05d}.json"), counts.to_json(), self.options)
        return counts

    def total_counts(self) -> ShardCounts:
        total = ShardCounts()
        for path in sorted(self.fs.glob(posixpath.join(self.root, PROGRESS_DIR, "shard-*.json"))):
            total += ShardCounts.from_json(read_json(self._uri(PROGRESS_DIR, posixpath.basename(path)), self.options))
        return total

    def finish(self, run: dict[str, Any]) -> None:
        atomic_write_json(self._uri(RUN_FILE), run, self.options)
        atomic_write(self._uri(SUCCESS_FILE), b"", self.options)

    def read_run(self) -> dict[str, Any]:
        return read_json(self._uri(RUN_FILE), self.options)
