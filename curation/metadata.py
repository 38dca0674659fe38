"""Video metadata (captions, categories, source datasets) from a CSV, JSONL or Parquet file.

Columns: ``video`` (the file's full URI, or any trailing part of its path that names one input only, such
as its path relative to the INPUT folder or its file name) and
``caption`` are required; ``category``, ``source_dataset``, ``start_sec`` and ``end_sec`` are
optional. Several rows for one video with ``start_sec``/``end_sec`` give per-scene captions: a clip
takes the caption of the row whose time range overlaps it most, and the video's untimed row (if
any) otherwise. Unknown columns are an error, so a misspelt optional column does not silently
drop data.
"""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from lavie.core.errors import UserError, message_line
from lavie.core.storage import filesystem

REQUIRED_COLUMNS = ("video", "caption")
OPTIONAL_COLUMNS = ("category", "source_dataset", "start_sec", "end_sec")


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


def read_metadata_table(url: str, storage_options: dict | None = None) -> pa.Table:
    """Read and check the metadata file's columns, raising a one-line UserError naming the file."""
    fs, path = filesystem(url, storage_options)
    if not fs.isfile(path):
        raise UserError(f"{url}: metadata file not found")
    suffix = posixpath.splitext(path)[1].lower()
    try:
        with fs.open(path, "rb") as f:
            if suffix == ".csv":
                table = pa_csv.read_csv(f)
            elif suffix in (".jsonl", ".json", ".ndjson"):
                table = pa_json.read_json(f)
            elif suffix in (".parquet", ".pq"):
                table = pq.read_table(f)
            else:
                raise UserError(f"{url}: metadata must be .csv, .jsonl or .parquet, not '{suffix or path}'")
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{url}: cannot parse metadata: {message_line(exc)}") from None
    columns = set(table.column_names)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise UserError(
            f"{url}: missing required column '{missing[0]}' (has: {', '.join(table.column_names)})"
        )
    unknown = sorted(columns - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    if unknown:
        raise UserError(
            f"{url}: unknown column '{unknown[0]}' (allowed: {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})"
        )
    if ("start_sec" in columns) != ("end_sec" in columns):
        raise UserError(f"{url}: 'start_sec' and 'end_sec' must be given together")
    return table


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _rows_by_video(table: pa.Table, url: str) -> dict[str, VideoMetadata]:
    by_video: dict[str, VideoMetadata] = defaultdict(VideoMetadata)
    for i, row in enumerate(table.to_pylist()):
        key = _text(row["video"])
        if not key:
            raise UserError(f"{url}: row {i + 1} has an empty 'video' value")
        meta = by_video[key]
        meta.category = _text(row.get("category")) or meta.category
        meta.source_dataset = _text(row.get("source_dataset")) or meta.source_dataset
        start, end = row.get("start_sec"), row.get("end_sec")
        caption = _text(row["caption"])
        if start is None and end is None:
            meta.caption = caption
        elif start is None or end is None or not float(end) > float(start):
            raise UserError(f"{url}: row {i + 1} ({key}) needs start_sec < end_sec, got {start!r}..{end!r}")
        elif caption is not None:
            meta.scene_captions.append(SceneCaption(float(start), float(end), caption))
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


def match_metadata(table: pa.Table, videos: tuple[str, ...], url: str) -> MetadataMatch:
    """Attach metadata rows to videos by full URI, else by the longest path suffix that names
    exactly one input (a relative path or the file name)."""
    rows = _rows_by_video(table, url)
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
