"""The manifest contract: one pyarrow schema per table, the folder layout, stable ids, and how any
manifest is opened and checked.

A finished curation output folder holds::

    clips/       Parquet dataset of kept single-scene clips          (CLIP_SCHEMA)
    rejects/     Parquet dataset of every dropped input or clip      (REJECT_SCHEMA)
    embeddings/  the kept clips' CLIP image embeddings, when scored  (embedding_schema)
    run.json   config, versions, counts per stage, timings
    _SUCCESS   written last

Image manifests (LAION-style) follow IMAGE_SCHEMA. A manifest may also be a plain Parquet file or
folder made elsewhere (a WebVid-style clip list, a LAION shard): readers select columns by name,
so extra columns never matter, and :meth:`Manifest.require_columns` says what is missing.

The ``_SUCCESS`` rule: a curation output folder is finished when ``_SUCCESS`` exists (it is
written last). Tools that report on data (``lavie stats``) open unfinished folders and say so;
tools that consume data (training) call :meth:`Manifest.require_finished`. A plain Parquet dataset
has no marker and is taken as it is.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from lavie.core.errors import UserError, first_line
from lavie.core.storage import arrow_filesystem, join, readable

CLIP_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_dataset", pa.string()),
        pa.field("category", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("caption_words", pa.int32()),
        pa.field("start_frame", pa.int64(), nullable=False),
        pa.field("end_frame", pa.int64(), nullable=False),  # exclusive
        pa.field("num_frames", pa.int64(), nullable=False),
        pa.field("start_sec", pa.float64()),
        pa.field("end_sec", pa.float64()),
        pa.field("duration_sec", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("codec", pa.string()),
        pa.field("aesthetic_score", pa.float32()),  # null when not scored
        pa.field("clip_score", pa.float32()),  # text-frame CLIP cosine similarity, null when not scored
        pa.field("motion_score", pa.float32()),  # mean motion / (width + height), null when not measured
        pa.field("motion_method", pa.string()),  # "motion_vectors" or "optical_flow"
        pa.field("overlay_score", pa.float32()),  # probability of overlaid text or a watermark, null when not run
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("clip_id", pa.string()),  # null when a whole input was rejected
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
        pa.field("num_frames", pa.int64()),
        pa.field("height", pa.int32()),
        pa.field("caption", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("duplicate_of", pa.string()),  # the clip kept in a near-duplicate's place (lavie dedup)
    ]
)

IMAGE_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("aesthetic_score", pa.float32()),
    ]
)

CLIP_COLUMNS = tuple(CLIP_SCHEMA.names)
REJECT_COLUMNS = tuple(REJECT_SCHEMA.names)
IMAGE_COLUMNS = tuple(IMAGE_SCHEMA.names)

CLIPS_DIR = "clips"
REJECTS_DIR = "rejects"
EMBEDDINGS_DIR = "embeddings"
RUN_FILE = "run.json"
SUCCESS_FILE = "_SUCCESS"

# run.json layout (keys a reader may rely on):
#   "counts": {"inputs": int, "inputs_rejected": int, "clips_detected": int,
#              "clips_kept": int, "clips_rejected": int}
#   "rejects_by_stage": {stage: {reason: count}}
#   "scoring": {"aesthetic": bool, "clip_score": bool, "skipped_reason": str | None}
#   "config": {...}, "versions": {...}, "timings": {"wall_sec": float, "stage_cpu_sec": {...}}

Kind = Literal["clips", "images"]
#: How each kind of manifest is named in messages.
KIND_NAMES: dict[Kind, str] = {"clips": "a video clip manifest", "images": "an image manifest"}
#: The column that tells a clip manifest (a video and a frame range per row) from an image one.
_KIND_COLUMN: dict[Kind, str] = {"clips": "source_uri", "images": "uri"}


def embedding_schema(dim: int) -> pa.Schema:
    """The embeddings dataset: one unit-length float16 vector per kept clip, keyed by ``clip_id``.
    Its files mirror clips/ (``embeddings/part-S.parquet`` holds the clips of ``clips/part-S.parquet``)."""
    return pa.schema([
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float16(), dim), nullable=False),
    ])  # fmt: skip


def embeddings_table(clip_ids: list[str], vectors: np.ndarray) -> pa.Table:
    """An :func:`embedding_schema` table of ``vectors`` (``(n, dim)``, stored as float16)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float16)
    values = pa.array(vectors.reshape(-1), pa.float16())
    column = pa.FixedSizeListArray.from_arrays(values, vectors.shape[1])
    return pa.Table.from_arrays([pa.array(clip_ids, pa.string()), column], schema=embedding_schema(vectors.shape[1]))


def embedding_matrix(table: pa.Table) -> np.ndarray:
    """The ``embedding`` column of an embeddings table as an ``(n, dim)`` float16 array."""
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), dim)


def clip_id_for(source_uri: str, start_frame: int) -> str:
    """Stable clip id: the same source and start frame always give the same id."""
    return hashlib.sha1(f"{source_uri}#{start_frame}".encode()).hexdigest()[:20]


def image_id_for(uri: str) -> str:
    """Stable image id derived from the image's URI."""
    return hashlib.sha1(uri.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Manifest:
    """An opened manifest: its main table (``clips/`` of a curation output, or the dataset itself)
    and, for a curation output, its rejects, run record and ``_SUCCESS`` state."""

    uri: str
    layout: Literal["curation_output", "parquet_dataset"]
    table: ds.FileSystemDataset
    table_uri: str  # where the main table lives, for messages
    rejects: ds.FileSystemDataset | None  # None: no rejects/ folder
    run: dict[str, Any] | None  # the parsed run.json, None when absent
    finished: bool | None  # whether _SUCCESS exists; None for a plain dataset

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(self.table.schema.names)

    @property
    def kind(self) -> Kind | None:
        """``clips`` or ``images`` by the identifying column; None when it has neither."""
        for kind, column in _KIND_COLUMN.items():
            if column in self.columns:
                return kind
        return None

    def require_columns(self, columns: Iterable[str]) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise UserError(f"{self.table_uri}: not a manifest: missing column(s) {', '.join(missing)}")

    def require_finished(self) -> None:
        if self.finished is False:
            raise UserError(f"{self.uri}: no {SUCCESS_FILE} marker (an unfinished or failed curation run)")


def open_manifest(uri: str, storage_options: Mapping[str, Any] | None = None) -> Manifest:
    """Open a curation output folder (one with ``clips/``) or any Parquet file or folder.

    Every problem is a one-line :class:`UserError` naming the path.
    """
    fs, path = readable(uri, storage_options)
    path = path.rstrip("/") or path
    base = uri.rstrip("/")
    try:
        is_output = fs.isdir(posixpath.join(path, CLIPS_DIR))
    except OSError as exc:
        raise UserError(f"{uri}: cannot be read ({first_line(exc)})") from None
    if not is_output:
        table = _dataset(base, storage_options, base, "no clips/ folder and no Parquet files")
        return Manifest(uri, "parquet_dataset", table, base, None, None, None)
    clips_uri = join(base, CLIPS_DIR)
    table = _dataset(clips_uri, storage_options, clips_uri, "no Parquet files")
    rejects = None
    if fs.isdir(posixpath.join(path, REJECTS_DIR)):
        rejects_uri = join(base, REJECTS_DIR)
        rejects = _dataset(rejects_uri, storage_options, rejects_uri, allow_empty=True)
    run = None
    run_path = posixpath.join(path, RUN_FILE)
    if fs.isfile(run_path):
        try:
            with fs.open(run_path, "rb") as handle:
                run = json.loads(handle.read())
        except (ValueError, OSError) as exc:
            raise UserError(f"{join(base, RUN_FILE)}: not valid JSON ({first_line(exc)})") from None
        if not isinstance(run, dict):
            raise UserError(f"{join(base, RUN_FILE)}: expected a JSON object")
    finished = fs.isfile(posixpath.join(path, SUCCESS_FILE))
    return Manifest(uri, "curation_output", table, clips_uri, rejects, run, finished)


def _dataset(
    url: str, storage_options: Mapping[str, Any] | None, where: str, empty_problem: str = "", allow_empty: bool = False
) -> ds.FileSystemDataset:
    """A pyarrow dataset over ``url``; files starting with ``_`` or ``.`` (``_SUCCESS``) are skipped.

    An empty folder is an error unless ``allow_empty`` (rejects/ of a run that dropped nothing)."""
    fs, path = arrow_filesystem(url, storage_options)
    try:
        dataset = ds.dataset(path, filesystem=fs, format="parquet")
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{where}: not a manifest: not a Parquet dataset ({first_line(exc)})") from None
    if not dataset.files and not allow_empty:
        raise UserError(f"{where}: not a manifest: {empty_problem}")
    return dataset
