"""Attach a ``--metadata`` file's rows to INPUT paths without holding either side whole.

A metadata key names a video by its full URI or by a trailing part of its path
(:func:`curation.metadata.match_metadata`), and every such key ends with the video's file name.
So the inputs and the metadata rows are spilled, on the driver's local disk, into buckets by a
hash of the file name; each bucket is matched on its own (a path suffix can only be ambiguous
between inputs that share a file name, and those share a bucket), and the matched inputs are
merged back into input order. Memory: one bucket, about (inputs + rows) / :data:`BUCKETS`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import posixpath
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from curation.metadata import TABLE_SCHEMA, VideoMetadata, iter_table_batches, match_metadata

BUCKETS = 256
_FLUSH_ROWS = 65536  # rows buffered across all buckets before they are written out
_INPUTS = pa.schema([("seq", pa.int64()), ("uri", pa.string())])
_ROWS = TABLE_SCHEMA.append(pa.field("row_number", pa.int64()))
_JOINED = pa.schema([("seq", pa.int64()), ("uri", pa.string()), ("metadata", pa.string())])

#: ``on_reject(key, reason, detail)``: a metadata key that names no input, or several.
RejectCallback = Callable[[str, str, str], None]


def _bucket(path: str) -> int:
    name = posixpath.basename(path.split("://", 1)[-1].rstrip("/"))
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "little") % BUCKETS


class _Spill:
    """Rows appended to one Arrow stream file per bucket, buffered in memory up to a bound."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        self.folder, self.schema = folder, schema
        folder.mkdir(parents=True, exist_ok=True)
        self._buffers: list[list[dict]] = [[] for _ in range(BUCKETS)]
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self._buffered = 0

    def add(self, bucket: int, row: dict) -> None:
        self._buffers[bucket].append(row)
        self._buffered += 1
        if self._buffered >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        for bucket, rows in enumerate(self._buffers):
            if rows:
                if bucket not in self._writers:
                    self._writers[bucket] = pa.ipc.new_stream(str(self.folder / f"{bucket}.arrow"), self.schema)
                self._writers[bucket].write_batch(pa.RecordBatch.from_pylist(rows, schema=self.schema))
                rows.clear()
        self._buffered = 0

    def close(self) -> None:
        self.flush()
        for writer in self._writers.values():
            writer.close()

    def read(self, bucket: int) -> pa.Table:
        path = self.folder / f"{bucket}.arrow"
        if not path.exists():
            return self.schema.empty_table()
        with pa.ipc.open_stream(str(path)) as reader:
            return reader.read_all()


def _sorted_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    with pa.ipc.open_stream(str(path)) as reader:
        for batch in reader:
            yield from zip(*(batch.column(i).to_pylist() for i in range(3)))


def join_metadata(
    uris: Iterable[str],
    url: str,
    storage_options: dict | None,
    workdir: Path,
    on_reject: RejectCallback,
    missing: Sequence[str] = (),
) -> Iterator[tuple[str, str]]:
    """``(uri, metadata record as JSON)`` for every input URI, in the order given.

    Metadata keys that name no input (unless they name one of the ``missing`` INPUT arguments,
    already recorded; read once every input is listed) or several go to ``on_reject``; a bad metadata row raises a UserError
    before the first result."""
    inputs, rows = _Spill(workdir / "inputs", _INPUTS), _Spill(workdir / "rows", _ROWS)
    for seq, uri in enumerate(uris):
        inputs.add(_bucket(uri), {"seq": seq, "uri": uri})
    inputs.close()
    number = 0
    for batch in iter_table_batches(url, storage_options):
        for row in batch.to_pylist():
            number += 1
            rows.add(_bucket(str(row["video"] or "")), {**row, "row_number": number})
    rows.close()

    joined = workdir / "joined"
    joined.mkdir()
    for bucket in range(BUCKETS):
        videos, table = inputs.read(bucket), rows.read(bucket)
        if not videos.num_rows and not table.num_rows:
            continue
        uris_here = tuple(videos.column("uri").to_pylist())
        match = match_metadata(table.drop_columns(["row_number"]), uris_here, url, table.column("row_number").to_pylist())
        for key in match.unmatched:
            if not any(m == key or m.endswith("/" + key) for m in missing):
                on_reject(key, "not_found", f"listed in {url} but not among the inputs")
        for key in match.ambiguous:
            on_reject(key, "ambiguous_metadata", f"'{key}' in {url} names several inputs; give a longer path")
        empty = VideoMetadata()
        records = [json.dumps(match.by_uri.get(uri, empty).to_record()) for uri in uris_here]
        with pa.ipc.new_stream(str(joined / f"{bucket}.arrow"), _JOINED) as writer:
            writer.write_table(pa.table([videos.column("seq"), videos.column("uri"), pa.array(records)], schema=_JOINED))
    parts = [_sorted_rows(path) for path in sorted(joined.glob("*.arrow"))]
    for _, uri, record in heapq.merge(*parts, key=lambda item: item[0]):
        yield uri, record
