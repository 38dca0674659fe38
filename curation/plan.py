"""Planning a curation run on the driver: the inputs, streamed once, become shard listings.

The inputs (INPUT paths, listed as they are walked, with ``--metadata`` joined on; or an
``--inputs-from`` listing, read a few thousand rows at a time) are cut into shards of
``videos_per_shard`` consecutive videos. Each shard's videos and metadata are written to its
listing file in the output folder, where the shard's worker reads them; the driver keeps one shard
of rows at a time, a running digest and counts. Nothing here holds a Python object per input.

Bad input is found here, before any work starts: a listing that cannot be read or lacks a
``video`` column, unknown columns, a bad metadata row, and a URI listed twice. The duplicate check
spills 16 bytes per input (a hash and the input's number) to local disk in hash-partitioned files
and checks one partition at a time.

A re-run plans again without writing (``write=False``) and compares fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.config import CurationConfig
from curation.inputs import MissingInput, iter_input_files
from curation.metadata import BATCH_ROWS, VideoMetadata, add_metadata_row, iter_table_batches
from curation.metadata_join import join_metadata
from curation.output import INPUT_REJECTS, LAYOUT, OutputDir, parquet_bytes
from lavie.core.errors import UserError
from lavie.core.storage import atomic_write, filesystem, is_local, local_path

LISTING_SCHEMA = pa.schema([("video", pa.string()), ("metadata", pa.string())])
INPUT_REJECT_SCHEMA = pa.schema([("source_uri", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
#: The columns an ``--inputs-from`` listing needs (the rest of curation.metadata.TABLE_SCHEMA is optional).
LISTING_REQUIRED = ("video",)
_EMPTY_METADATA = json.dumps(VideoMetadata().to_record())


@dataclass(frozen=True)
class InputSpec:
    """What a curation run reads: INPUT paths (with an optional metadata file) and/or a listing."""

    paths: tuple[str, ...] = ()
    metadata: str | None = None
    inputs_from: str | None = None

    def check(self) -> None:
        if not self.paths and not self.inputs_from:
            raise UserError("no input given: name INPUT paths or --inputs-from LISTING")
        if self.metadata and not self.paths:
            raise UserError(f"{self.metadata}: --metadata goes with INPUT paths; an --inputs-from listing carries its own columns")


@dataclass(frozen=True)
class Plan:
    """The shards of a run. Video shards are numbered ``0..video_shards-1``; when inputs were
    rejected before any video is opened, they form one more shard, number ``video_shards``."""

    videos: int
    video_shards: int
    input_rejects: int
    digest: str

    @property
    def shards(self) -> int:
        return self.video_shards + (1 if self.input_rejects else 0)

    def fingerprint(self, config: CurationConfig) -> dict[str, Any]:
        return {
            "layout": LAYOUT,
            "listing": {"digest": self.digest, "videos": self.videos, "input_rejects": self.input_rejects,
                        "shards": self.shards},
            "config": config.model_dump(mode="json"),
        }  # fmt: skip


class DuplicateCheck:
    """Finds an input listed twice with memory that does not grow with the inputs: 64-bit hashes
    and input numbers are spilled into hash-partitioned files, then checked partition by partition."""

    PARTITIONS = 64
    _BUFFER = 1 << 16

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._buffer = np.empty(self._BUFFER, dtype=np.uint64)  # a fixed buffer: no object per input
        self._buffered = 0
        self._spilled = 0

    @staticmethod
    def _hash(uri: str) -> int:
        return int.from_bytes(hashlib.blake2b(uri.encode(), digest_size=8).digest(), "little")

    def add(self, uri: str) -> None:
        self._buffer[self._buffered] = self._hash(uri)
        self._buffered += 1
        if self._buffered == self._BUFFER:
            self._spill()

    def _spill(self) -> None:
        hashes = self._buffer[: self._buffered]
        numbers = np.arange(self._spilled, self._spilled + len(hashes), dtype=np.uint64)
        partition = hashes % np.uint64(self.PARTITIONS)
        for p in np.unique(partition):
            chosen = partition == p
            with open(self.folder / f"dup-{p}.bin", "ab") as handle:
                np.stack([hashes[chosen], numbers[chosen]], axis=1).tofile(handle)
        self._spilled += len(hashes)
        self._buffered = 0

    def first_repeat(self) -> tuple[int, int] | None:
        """(first, second) input numbers of a hash seen twice, the earliest such second, or None."""
        if self._buffered:
            self._spill()
        best: tuple[int, int] | None = None
        for path in self.folder.glob("dup-*.bin"):
            pairs = np.fromfile(path, dtype=np.uint64).reshape(-1, 2)
            pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
            same = np.nonzero(pairs[1:, 0] == pairs[:-1, 0])[0]
            if len(same):
                i = int(np.argmin(pairs[same + 1, 1]))
                candidate = (int(pairs[same[i], 1]), int(pairs[same[i] + 1, 1]))
                best = candidate if best is None or candidate[1] < best[1] else best
        return best


class ListingWriter:
    """Cuts the stream of videos into shard listings, digesting every video and its metadata."""

    def __init__(self, out: OutputDir, videos_per_shard: int, write: bool, workdir: Path) -> None:
        self.out, self.per_shard, self.write = out, videos_per_shard, write
        self.digest = hashlib.sha256()
        self.duplicates = DuplicateCheck(workdir)
        self.videos = 0
        self.rejects = 0
        self._rows: list[tuple[str, str]] = []
        # Rejects go to a local Parquet file a batch at a time (a metadata file can name millions
        # of videos that are not among the inputs), then to the output folder in one piece.
        self._rejects_file = workdir / INPUT_REJECTS
        self._reject_rows: list[dict[str, str]] = []
        self._reject_writer: pq.ParquetWriter | None = None

    def add(self, uri: str, metadata: str) -> None:
        self.digest.update(f"{uri}\0{metadata}\n".encode())
        self.duplicates.add(uri)
        self._rows.append((uri, metadata))
        self.videos += 1
        if len(self._rows) == self.per_shard:
            self._flush()

    def reject(self, uri: str, reason: str, detail: str) -> None:
        self.digest.update(f"reject\0{uri}\0{reason}\0{detail}\n".encode())
        self.rejects += 1
        self._reject_rows.append({"source_uri": uri, "reason": reason, "detail": detail})
        if len(self._reject_rows) >= BATCH_ROWS:
            self._flush_rejects()

    def _flush_rejects(self) -> None:
        if self._reject_rows and self.write:
            if self._reject_writer is None:
                self._reject_writer = pq.ParquetWriter(self._rejects_file, INPUT_REJECT_SCHEMA, compression="zstd")
            self._reject_writer.write_table(pa.Table.from_pylist(self._reject_rows, schema=INPUT_REJECT_SCHEMA))
        self._reject_rows = []

    def _flush(self) -> None:
        if self._rows and self.write:
            shard = (self.videos - 1) // self.per_shard
            videos, metadata = zip(*self._rows)
            table = pa.table([pa.array(videos), pa.array(metadata)], schema=LISTING_SCHEMA)
            atomic_write(self.out.listing_uri(f"shard-{shard:05d}.parquet"), parquet_bytes(table), self.out.options)
        self._rows = []

    def close(self) -> None:
        self._flush()
        self._flush_rejects()
        if self._reject_writer is not None:
            self._reject_writer.close()
            # plan.json is written after this: a copy cut short is never read.
            fs, path = filesystem(self.out.listing_uri(INPUT_REJECTS), self.out.options)
            fs.put_file(str(self._rejects_file), path)


def _absolute(uri: str) -> str:
    return os.path.abspath(local_path(uri)) if is_local(uri) else uri


def _listing_videos(url: str, storage_options: dict | None) -> Iterator[tuple[str, str, int]]:
    """``(uri, metadata JSON, row number)`` per video of an ``--inputs-from`` listing. A video's
    rows (several when it has timed scene captions) are consecutive."""
    current: tuple[str, VideoMetadata, int] | None = None
    number = 0
    for batch in iter_table_batches(url, storage_options, required=LISTING_REQUIRED, what="listing"):
        for row in batch.to_pylist():
            number += 1
            if not row["video"]:
                raise UserError(f"{url}: row {number} has an empty 'video' value")
            uri = _absolute(row["video"])
            if current is None or current[0] != uri:
                if current is not None:
                    yield current[0], json.dumps(current[1].to_record()), current[2]
                current = (uri, VideoMetadata(), number)
            add_metadata_row(current[1], row, f"{url}: row {number} ({row['video']})")
    if current is not None:
        yield current[0], json.dumps(current[1].to_record()), current[2]


def _path_videos(spec: InputSpec, storage_options: dict | None, writer: ListingWriter, workdir: Path) -> Iterator[tuple[str, str]]:
    missing: list[str] = []

    def files() -> Iterator[str]:
        for item in iter_input_files(list(spec.paths), storage_options):
            if isinstance(item, MissingInput):
                missing.append(item.uri)
                writer.reject(item.uri, "not_found", item.detail)
            else:
                yield item

    if not spec.metadata:
        for uri in files():
            yield uri, _EMPTY_METADATA
        return
    # The join lists every input before it yields any, so `missing` is complete when it is read.
    yield from join_metadata(files(), spec.metadata, storage_options, workdir / "join", writer.reject, missing)


def _describe(spec: InputSpec, storage_options: dict | None, number: int) -> str:
    """The input with number ``number`` (its position in the stream the planner read)."""
    seen = 0
    if spec.paths:
        for item in iter_input_files(list(spec.paths), storage_options):
            if isinstance(item, MissingInput):
                continue
            if seen == number:
                return item
            seen += 1
    if spec.inputs_from:
        for uri, _, row in _listing_videos(spec.inputs_from, storage_options):
            if seen == number:
                return f"{uri} (row {row})"
            seen += 1
    return f"input {number}"


def plan_inputs(
    spec: InputSpec, config: CurationConfig, out: OutputDir, storage_options: dict | None, *, write: bool
) -> Plan:
    """Stream the inputs into shard listings under ``out`` (only when ``write``); see the module
    docstring. Raises a one-line UserError for bad input, leaving no listing behind."""
    spec.check()
    with tempfile.TemporaryDirectory(prefix="lavie-plan-") as tmp:
        workdir = Path(tmp)
        writer = ListingWriter(out, config.videos_per_shard, write, workdir)
        try:
            if spec.paths:
                for uri, metadata in _path_videos(spec, storage_options, writer, workdir):
                    writer.add(uri, metadata)
            if spec.inputs_from:
                for uri, metadata, _ in _listing_videos(spec.inputs_from, storage_options):
                    writer.add(uri, metadata)
            repeat = writer.duplicates.first_repeat()
            if repeat is not None:
                first, second = (_describe(spec, storage_options, n) for n in repeat)
                if first.split(" (row")[0] == second.split(" (row")[0]:
                    where = spec.inputs_from or " ".join(spec.paths)
                    raise UserError(f"{where}: {second} is listed twice (first as input {repeat[0] + 1}); list each video once")
            writer.close()
        except BaseException:
            if write:
                out.clear_listing()
            raise
    if not writer.videos and not writer.rejects:
        raise UserError("no input given")
    video_shards = -(-writer.videos // config.videos_per_shard)
    return Plan(writer.videos, video_shards, writer.rejects, writer.digest.hexdigest())
