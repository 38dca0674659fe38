"""Open what the user named as a manifest: a curation output folder or a plain Parquet dataset.

A curation output is a folder with ``clips/`` (and usually ``rejects/``, ``run.json``,
``_SUCCESS``); anything else must be a Parquet file or folder of Parquet files with the clip
columns the report needs. Every problem is a one-line ``UserError`` naming the input.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Literal

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds

from curation.errors import UserError, first_line
from curation.inputs import filesystem_for
from curation.schema import CLIPS_DIR, REJECTS_DIR, RUN_FILE, SUCCESS_FILE
from curation.stats.accumulate import NUMERIC_COLUMNS, REQUIRED_COLUMNS, STRING_COLUMNS
from curation.stats.funnel import REJECT_COLUMNS_USED

@dataclass
class Manifest:
    label: str
    uri: str
    kind: Literal["curation_output", "parquet_dataset"]
    clips: ds.FileSystemDataset
    rejects: ds.FileSystemDataset | None  # None: no rejects/ folder (a plain dataset)
    run: dict | None  # the parsed run.json, None when absent
    finished: bool | None  # whether _SUCCESS exists; None for a plain dataset

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(self.clips.schema.names)


def default_label(uri: str) -> str:
    """The folder name of a manifest (the file name without extension for a single file)."""
    name = posixpath.basename(uri.rstrip("/")) or uri
    return name[: -len(".parquet")] if name.endswith(".parquet") else name


def open_manifest(uri: str, label: str | None = None, storage_options: dict | None = None) -> Manifest:
    """Open ``uri``, a local path or fsspec URL. Remote settings (an S3 endpoint, keys) come from
    ``storage_options`` or else the environment (AWS_* variables, fsspec's FSSPEC_S3_* config)."""
    fs, path = filesystem_for(uri, storage_options)
    path = path.rstrip("/") or path
    try:
        exists = fs.exists(path)
        is_output = exists and fs.isdir(posixpath.join(path, CLIPS_DIR))
    except OSError as exc:
        raise UserError(f"{uri}: cannot be read ({first_line(exc)})") from None
    if not exists:
        raise UserError(f"{uri}: no such file or folder")
    label = label or default_label(uri)
    if not is_output:
        clips = _parquet_dataset(fs, path, uri, "no clips/ folder and no Parquet files")
        _check_clip_columns(clips, uri)
        return Manifest(label, uri, "parquet_dataset", clips, None, None, None)

    clips_uri = f"{uri.rstrip('/')}/{CLIPS_DIR}"
    clips = _parquet_dataset(fs, posixpath.join(path, CLIPS_DIR), clips_uri, "no Parquet files")
    _check_clip_columns(clips, clips_uri)
    rejects = None
    if fs.isdir(posixpath.join(path, REJECTS_DIR)):
        rejects_uri = f"{uri.rstrip('/')}/{REJECTS_DIR}"
        rejects = _parquet_dataset(fs, posixpath.join(path, REJECTS_DIR), rejects_uri, allow_empty=True)
        missing = [c for c in REJECT_COLUMNS_USED if c not in rejects.schema.names]
        if rejects.files and missing:
            raise UserError(f"{rejects_uri}: not a rejects table: missing column(s) {', '.join(missing)}")
    run = None
    run_path = posixpath.join(path, RUN_FILE)
    if fs.isfile(run_path):
        try:
            with fs.open(run_path, "rb") as f:
                run = json.load(f)
        except (ValueError, OSError) as exc:
            raise UserError(f"{uri.rstrip('/')}/{RUN_FILE}: not valid JSON ({first_line(exc)})") from None
        if not isinstance(run, dict):
            raise UserError(f"{uri.rstrip('/')}/{RUN_FILE}: expected a JSON object")
    finished = fs.isfile(posixpath.join(path, SUCCESS_FILE))
    return Manifest(label, uri, "curation_output", clips, rejects, run, finished)


def _parquet_dataset(
    fs: fsspec.AbstractFileSystem, path: str, uri: str, empty_problem: str = "", allow_empty: bool = False
) -> ds.FileSystemDataset:
    """A pyarrow dataset over ``path``; files starting with ``_`` or ``.`` (``_SUCCESS``) are skipped.

    An empty folder is an error unless ``allow_empty`` (rejects/ of a run that dropped nothing)."""
    try:
        dataset = ds.dataset(path, filesystem=fs, format="parquet")
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{uri}: not a manifest: not a Parquet dataset ({first_line(exc)})") from None
    if not dataset.files and not allow_empty:
        raise UserError(f"{uri}: not a manifest: {empty_problem}")
    return dataset


def _check_clip_columns(clips: ds.Dataset, uri: str) -> None:
    schema = clips.schema
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise UserError(f"{uri}: not a manifest: missing column(s) {', '.join(missing)}")
    for name in NUMERIC_COLUMNS:
        if name in schema.names:
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
                raise UserError(f"{uri}: column '{name}' has type {kind}, expected a number")
    for name in STRING_COLUMNS:
        if name in schema.names:
            kind = schema.field(name).type
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
                raise UserError(f"{uri}: column '{name}' has type {kind}, expected a string")
