"""Video metadata (captions, categories, source datasets) from a CSV, JSONL or Parquet file.

Columns: ``video`` (the file's full URI, or any trailing part of its path that names one input only, such
as its path relative to the INPUT folder or its file name) and
``caption`` are required; ``category``, ``source_dataset``, ``start_sec`` and ``end_sec`` are
optional. Several rows for one video with ``start_sec``/``end_sec`` give per-scene captions: a clip
takes the caption of the row whose time range overlaps it most, and the video's untimed row (if
any) otherwise. Unknown columns are an error, so a misspelt optional column does not silently
drop data.

An ``--inputs-from`` listing has the same columns with only ``video`` required (a full URI there).
Both are read as a stream of batches (:func:`iter_table_batches`), never whole.
"""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from lavie.core.errors import UserError, message_line
from lavie.core.storage import filesystem

REQUIRED_COLUMNS = ("video", "caption")


@dataclass(frozen=True)
class SceneCaption:
    start_sec: float
    end_sec: float
    caption: str


@dataclass
class VideoMetadata:
    """Everything the metadata says about one video."""

    caption: str | None = None
    category: str | None = None
    source_dataset: str | None = None
    scene_captions: list[SceneCaption] = field(default_factory=list)

    def caption_for(self, start_sec: float, end_sec: float) -> str | None:
        """The caption of the timed row overlapping [start_sec, end_sec) most, else the video's."""
        best, best_overlap = None, 0.0
        for scene in self.scene_captions:
            overlap = min(end_sec, scene.end_sec) - max(start_sec, scene.start_sec)
            if overlap > best_overlap:
                best, best_overlap = scene.caption, overlap
        return best if best is not None else self.caption

    def to_record(self) -> dict:
        return {
            "caption": self.caption,
            "category": self.category,
            "source_dataset": self.source_dataset,
            "scene_captions": [[s.start_sec, s.end_sec, s.caption] for s in self.scene_captions],
        }

    @classmethod
    def from_record(cls, record: dict) -> VideoMetadata:
        scenes = [SceneCaption(float(a), float(b), str(c)) for a, b, c in record.get("scene_captions") or []]
        return cls(record.get("caption"), record.get("category"), record.get("source_dataset"), scenes)


#: The columns of a metadata file or an input listing, with the types every batch is cast to.
TABLE_SCHEMA = pa.schema(
    [
        ("video", pa.string()),
        ("caption", pa.string()),
        ("category", pa.string()),
        ("source_dataset", pa.string()),
        ("start_sec", pa.float64()),
        ("end_sec", pa.float64()),
    ]
)
_FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet", ".pq": "parquet"}
BATCH_ROWS = 8192


def _raw_batches(handle, kind: str) -> Iterator[pa.RecordBatch]:
    if kind == "csv":
        types = {field.name: field.type for field in TABLE_SCHEMA}
        yield from pa_csv.open_csv(handle, convert_options=pa_csv.ConvertOptions(column_types=types))
    elif kind == "json":
        options = pa_json.ParseOptions(explicit_schema=TABLE_SCHEMA, unexpected_field_behavior="infer")
        yield from pa_json.open_json(handle, parse_options=options)
    else:
        # Buffered reads of a row group's column chunks: without them pyarrow keeps what it read of
        # the file, and the reader's memory grows with the listing (measured: 2 M rows, +29 MB).
        parquet = pq.ParquetFile(handle, pre_buffer=False, buffer_size=1 << 20)
        yield from parquet.iter_batches(batch_size=BATCH_ROWS)


def _conform(batch: pa.RecordBatch, url: str, required: tuple[str, ...]) -> pa.RecordBatch:
    """``batch`` with :data:`TABLE_SCHEMA`'s columns and types, or a one-line UserError."""
    names = batch.schema.names
    missing = [c for c in required if c not in names]
    if missing:
        raise UserError(f"{url}: missing required column '{missing[0]}' (has: {', '.join(names)})")
    unknown = [c for c in names if c not in TABLE_SCHEMA.names]
    if unknown:
        raise UserError(f"{url}: unknown column '{unknown[0]}' (allowed: {', '.join(TABLE_SCHEMA.names)})")
    if ("start_sec" in names) != ("end_sec" in names):
        raise UserError(f"{url}: 'start_sec' and 'end_sec' must be given together")
    columns = []
    for field in TABLE_SCHEMA:
        if field.name not in names:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        try:
            columns.append(batch.column(field.name).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise UserError(f"{url}: column '{field.name}' must hold {field.type} values: {message_line(exc)}") from None
    return pa.RecordBatch.from_arrays(columns, schema=TABLE_SCHEMA)


def iter_table_batches(
    url: str, storage_options: dict | None = None, required: tuple[str, ...] = REQUIRED_COLUMNS, what: str = "metadata file"
) -> Iterator[pa.RecordBatch]:
    """Stream a CSV, JSONL or Parquet metadata file or listing as :data:`TABLE_SCHEMA` batches
    (a few thousand rows at a time, never the whole file), checking its columns: a missing
    required column, an unknown column or an unparsable file is a one-line UserError naming it
    (and calling it ``what``)."""
    fs, path = filesystem(url, storage_options)
    suffix = posixpath.splitext(path)[1].lower()
    kind = _FORMATS.get(suffix)
    if kind is None:
        raise UserError(f"{url}: a {what} must be .csv, .jsonl or .parquet, not '{suffix or path}'")
    if not fs.isfile(path):
        raise UserError(f"{url}: {what} not found")
    try:
        with fs.open(path, "rb") as handle:
            for batch in _raw_batches(handle, kind):
                yield _conform(batch, url, required)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{url}: cannot read this {what}: {message_line(exc)}") from None


def read_metadata_table(url: str, storage_options: dict | None = None) -> pa.Table:
    """A whole (small) metadata file as one table; see :func:`iter_table_batches`."""
    return pa.Table.from_batches(list(iter_table_batches(url, storage_options)), schema=TABLE_SCHEMA)


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def add_metadata_row(meta: VideoMetadata, row: dict, where: str) -> None:
    """Apply one metadata row to its video's record: an untimed row sets the video's caption, a
    timed one (``start_sec`` < ``end_sec``) adds a scene caption. ``where`` names the row in errors."""
    meta.category = _text(row.get("category")) or meta.category
    meta.source_dataset = _text(row.get("source_dataset")) or meta.source_dataset
    start, end = row.get("start_sec"), row.get("end_sec")
    caption = _text(row.get("caption"))
    if start is None and end is None:
        meta.caption = caption
    elif start is None or end is None or not float(end) > float(start):
        raise UserError(f"{where} needs start_sec < end_sec, got {start!r}..{end!r}")
    elif caption is not None:
        meta.scene_captions.append(SceneCaption(float(start), float(end), caption))


def _rows_by_video(table: pa.Table, url: str, row_numbers: list[int] | None = None) -> dict[str, VideoMetadata]:
    by_video: dict[str, VideoMetadata] = defaultdict(VideoMetadata)
    for i, row in enumerate(table.to_pylist()):
        number = row_numbers[i] if row_numbers else i + 1
        key = _text(row["video"])
        if not key:
            raise UserError(f"{url}: row {number} has an empty 'video' value")
        add_metadata_row(by_video[key], row, f"{url}: row {number} ({key})")
    return dict(by_video)


@dataclass(frozen=True)
class MetadataMatch:
    by_uri: dict[str, VideoMetadata]
    unmatched: tuple[str, ...]  # metadata keys naming no input video
    ambiguous: tuple[str, ...]  # metadata keys naming several input videos


def _path_suffixes(uri: str) -> list[str]:
    """'s3://b/x/y/c.mp4' → ['x/y/c.mp4', 'y/c.mp4', 'c.mp4'] (longest first)."""
    parts = uri.split("://", 1)[-1].strip("/").split("/")
    return ["/".join(parts[i:]) for i in range(1, len(parts))] or parts


def match_metadata(
    table: pa.Table, videos: tuple[str, ...], url: str, row_numbers: list[int] | None = None
) -> MetadataMatch:
    """Attach metadata rows to videos by full URI, else by the longest path suffix that names
    exactly one input (a relative path or the file name). ``row_numbers``: each table row's number
    in its file, for errors, when the table is a part of it."""
    rows = _rows_by_video(table, url, row_numbers)
    suffix_counts: dict[str, int] = defaultdict(int)
    for uri in videos:
        for suffix in _path_suffixes(uri):
            suffix_counts[suffix] += 1
    by_uri: dict[str, VideoMetadata] = {}
    used: set[str] = set()
    for uri in videos:
        candidates = [uri] + [s for s in _path_suffixes(uri) if suffix_counts[s] == 1]
        for key in candidates:
            if key in rows:
                by_uri[uri] = rows[key]
                used.add(key)
                break
    leftover = set(rows) - used
    ambiguous = {key for key in leftover if suffix_counts.get(key, 0) > 1}
    return MetadataMatch(by_uri, unmatched=tuple(sorted(leftover - ambiguous)), ambiguous=tuple(sorted(ambiguous)))
