"""Video sets to measure, and the captions CLIPSIM pairs them with.

A set is

* a folder of videos (local or fsspec URL), walked recursively for video extensions: one item per
  video, its frames from the first; or
* a ``lavie generate`` output folder (``manifest.parquet`` beside ``videos/``): one item per
  generated video, its prompt as its caption; or
* a clip manifest (a curation output, or any Parquet file or folder with ``source_uri``), opened
  with :func:`lavie.core.manifest.open_manifest`: one item per row, its frames
  ``[start_frame, end_frame)`` when the manifest has those columns, else the whole video; a
  ``caption`` column is kept.

Each item carries a stamp of its file (size and modification time, or the object store's ETag),
so that a changed file is a new item: per-video work files and the real-set statistics cache are
keyed by it (:attr:`VideoItem.key`, :meth:`VideoSet.fingerprint`).

Captions (:func:`attach_captions`) come from a CSV or JSONL file with columns ``video`` and
``caption``, or from a manifest's ``source_uri`` and ``caption`` columns. ``video`` is the file's
full URI or any trailing part of its path (``sub/clip.mp4``, ``clip.mp4``, also without the
extension: ``video7020``) that names one video of the set. A caption that matches no video, a
video with two captions and a video without one are each a one-line error.
"""

from __future__ import annotations

import hashlib
import posixpath
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from cascade.batch import MANIFEST, VIDEOS
from lavie.core.errors import UserError, first_line
from lavie.core.manifest import SUCCESS_FILE, open_manifest
from lavie.core.storage import join, readable, to_uri

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp", ".gif"}
)
CAPTION_FILE_SUFFIXES = (".csv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class VideoItem:
    """One video (or one clip of it) of a set."""

    uri: str
    start_frame: int = 0
    end_frame: int | None = None  # exclusive; None: to the end of the video
    stamp: str = ""  # size and modification time (or ETag) of the file
    caption: str | None = None

    @property
    def key(self) -> str:
        """A stable name for the item's work files: changes with the file, the range and the caption."""
        text = f"{self.uri}\0{self.start_frame}\0{self.end_frame}\0{self.stamp}\0{self.caption}"
        return hashlib.sha1(text.encode()).hexdigest()[:24]

    @property
    def label(self) -> str:
        """The item as messages name it."""
        if self.start_frame == 0 and self.end_frame is None:
            return self.uri
        return f"{self.uri} [{self.start_frame}, {'end' if self.end_frame is None else self.end_frame})"


@dataclass(frozen=True)
class VideoSet:
    uri: str
    items: tuple[VideoItem, ...]
    layout: str  # "folder", "generated" or "manifest"

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        """SHA-256 over the sorted items (URI, range, file stamp): the same files give the same value."""
        lines = sorted(f"{i.uri}\t{i.start_frame}\t{i.end_frame}\t{i.stamp}" for i in self.items)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def sample(self, count: int | None, seed: int = 0) -> VideoSet:
        """``count`` items drawn without replacement (seeded, so the same set gives the same draw),
        in their original order; all of them when ``count`` is None or not smaller than the set."""
        if count is None or count >= len(self.items):
            return self
        chosen = set(random.Random(seed).sample(range(len(self.items)), count))
        return replace(self, items=tuple(item for i, item in enumerate(self.items) if i in chosen))

    def require(self, minimum: int, what: str) -> None:
        if len(self.items) < minimum:
            raise UserError(f"{self.uri}: {len(self.items)} video(s); {what} needs at least {minimum}")


def _stamp(info: Mapping[str, Any]) -> str:
    """Size and modification time (or ETag) from an fsspec ``info`` record."""
    changed = next((info[k] for k in ("mtime", "LastModified", "last_modified", "ETag", "etag", "created") if info.get(k)), "")
    return f"{info.get('size', '')}:{changed}"


def is_manifest(uri: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """A Parquet file, a curation output (``clips/``) or a folder of Parquet files."""
    fs, path = readable(uri, storage_options)
    if fs.isfile(path):
        return path.endswith((".parquet", ".pq"))
    if fs.isdir(posixpath.join(path, "clips")):
        return True
    names = [posixpath.basename(p) for p in fs.ls(path, detail=False)]
    return any(n.endswith((".parquet", ".pq")) for n in names) or SUCCESS_FILE in names


def is_generated(uri: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    fs, path = readable(uri, storage_options)
    return fs.isfile(posixpath.join(path, MANIFEST)) and fs.isdir(posixpath.join(path, VIDEOS))


def open_set(uri: str, storage_options: Mapping[str, Any] | None = None) -> VideoSet:
    """The videos of a folder, of a generation output, or the clips of a manifest (see the module docstring)."""
    if is_generated(uri, storage_options):
        return open_generated(uri, storage_options)
    if is_manifest(uri, storage_options):
        return _manifest_set(uri, storage_options)
    fs, path = readable(uri, storage_options)
    if not fs.isdir(path):
        raise UserError(f"{uri}: not a folder of videos or a clip manifest")
    try:
        found = fs.find(path, detail=True)
    except OSError as exc:
        raise UserError(f"{uri}: cannot be listed ({first_line(exc)})") from None
    items = tuple(
        VideoItem(to_uri(fs, p), stamp=_stamp(info))
        for p, info in sorted(found.items())
        if posixpath.splitext(p)[1].lower() in VIDEO_EXTENSIONS
    )
    if not items:
        raise UserError(f"{uri}: the folder holds no video file ({', '.join(sorted(VIDEO_EXTENSIONS))})")
    return VideoSet(uri, items, "folder")


def open_generated(folder: str, storage_options: Mapping[str, Any] | None = None) -> VideoSet:
    """The videos of a ``lavie generate`` output folder, each captioned with its prompt, in
    manifest order. A prompt whose generation failed is a one-line error: the set is incomplete."""
    fs, path = readable(folder, storage_options)
    manifest = join(folder, MANIFEST)
    try:
        with fs.open(posixpath.join(path, MANIFEST), "rb") as handle:
            table = pq.read_table(handle)
        rows = table.select([c for c in ("path", "prompt", "status", "error") if c in table.column_names]).to_pylist()
    except (pa.ArrowInvalid, KeyError, OSError) as exc:
        raise UserError(f"{manifest}: not a generation manifest ({first_line(exc)})") from None
    failed = [row for row in rows if row.get("status", "ok") != "ok"]
    if failed:
        raise UserError(f"{manifest}: {len(failed)} of {len(rows)} prompt(s) failed to generate, e.g. {failed[0].get('error')}")
    if not rows:
        raise UserError(f"{manifest}: the generation manifest has no rows")
    listing = {to_uri(fs, p): info for p, info in fs.find(posixpath.join(path, VIDEOS), detail=True).items()}
    items = []
    for row in rows:
        uri = join(to_uri(fs, path), row["path"])
        if uri not in listing:
            raise UserError(f"{manifest}: {row['path']} is listed but missing")
        items.append(VideoItem(uri, stamp=_stamp(listing[uri]), caption=row["prompt"]))
    return VideoSet(folder, tuple(items), "generated")


def _manifest_set(uri: str, storage_options: Mapping[str, Any] | None) -> VideoSet:
    manifest = open_manifest(uri, storage_options)
    manifest.require_columns(["source_uri"])
    columns = ["source_uri", *(c for c in ("start_frame", "end_frame", "caption") if c in manifest.columns)]
    rows = manifest.table.to_table(columns=columns).to_pylist()
    if not rows:
        raise UserError(f"{manifest.table_uri}: the manifest has no rows")
    stamps: dict[str, str] = {}
    items = []
    for number, row in enumerate(rows, start=1):
        source = row["source_uri"]
        if not source:
            raise UserError(f"{manifest.table_uri}: row {number} has no source_uri")
        if source not in stamps:
            fs, path = readable(source, storage_options)
            stamps[source] = _stamp(fs.info(path))
        start, end = row.get("start_frame") or 0, row.get("end_frame")
        if start < 0 or (end is not None and end <= start):
            raise UserError(f"{manifest.table_uri}: row {number} ({source}) has an empty frame range [{start}, {end})")
        items.append(VideoItem(source, int(start), None if end is None else int(end), stamps[source], row.get("caption")))
    return VideoSet(uri, tuple(items), "manifest")


# --------------------------------------------------------------------------- captions
def read_captions(uri: str, storage_options: Mapping[str, Any] | None = None) -> list[tuple[str, str | None]]:
    """(video reference, caption) rows of a CSV/JSONL caption file or of a manifest."""
    if is_manifest(uri, storage_options):
        manifest = open_manifest(uri, storage_options)
        manifest.require_columns(["source_uri", "caption"])
        table = manifest.table.to_table(columns=["source_uri", "caption"])
        return list(zip(table.column("source_uri").to_pylist(), table.column("caption").to_pylist()))
    fs, path = readable(uri, storage_options)
    suffix = posixpath.splitext(path)[1].lower()
    if suffix not in CAPTION_FILE_SUFFIXES:
        raise UserError(f"{uri}: captions must be a .csv or .jsonl file (columns video, caption) or a manifest")
    try:
        with fs.open(path, "rb") as handle:
            table = pa_csv.read_csv(handle) if suffix == ".csv" else pa_json.read_json(handle)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{uri}: cannot parse captions: {first_line(exc)}") from None
    missing = [c for c in ("video", "caption") if c not in table.column_names]
    if missing:
        raise UserError(f"{uri}: missing column '{missing[0]}' (has: {', '.join(table.column_names)})")
    videos = [None if v is None else str(v) for v in table.column("video").to_pylist()]
    captions = [None if c is None else str(c) for c in table.column("caption").to_pylist()]
    return list(zip(videos, captions))


def _references(uri: str) -> list[str]:
    """The names a caption row may give a video: its URI, each trailing part of its path, and
    each of those without the extension."""
    parts = uri.split("://", 1)[-1].strip("/").split("/")
    suffixes = [uri] + ["/".join(parts[i:]) for i in range(len(parts))]
    return list(dict.fromkeys(suffixes + [posixpath.splitext(s)[0] for s in suffixes]))


def attach_captions(videos: VideoSet, captions_uri: str, storage_options: Mapping[str, Any] | None = None) -> VideoSet:
    """``videos`` with each item's caption from ``captions_uri`` (see the module docstring)."""
    rows = read_captions(captions_uri, storage_options)
    if not rows:
        raise UserError(f"{captions_uri}: no captions")
    owners: dict[str, set[str]] = defaultdict(set)
    for item in videos.items:
        for reference in _references(item.uri):
            owners[reference].add(item.uri)
    caption_of: dict[str, str] = {}
    for number, (reference, caption) in enumerate(rows, start=1):
        if not reference:
            raise UserError(f"{captions_uri}: row {number} names no video")
        if not caption or not caption.strip():
            raise UserError(f"{captions_uri}: row {number} ({reference}) has an empty caption")
        matched = owners.get(reference.strip().removeprefix("./"), set())
        if not matched:
            raise UserError(f"{captions_uri}: '{reference}' (row {number}) matches no video of {videos.uri}")
        if len(matched) > 1:
            raise UserError(f"{captions_uri}: '{reference}' (row {number}) names {len(matched)} videos; give a longer path")
        (uri,) = matched
        if uri in caption_of and caption_of[uri] != caption:
            raise UserError(f"{captions_uri}: {uri} has more than one caption (row {number}); give one per video")
        caption_of[uri] = caption
    lacking = sorted({item.uri for item in videos.items} - set(caption_of))
    if lacking:
        raise UserError(f"{captions_uri}: {len(lacking)} video(s) of {videos.uri} have no caption, e.g. {lacking[0]}")
    return replace(videos, items=tuple(replace(item, caption=caption_of[item.uri]) for item in videos.items))
