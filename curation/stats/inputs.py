"""What the report reads: a manifest (opened by :func:`lavie.core.manifest.open_manifest`) under
a label, checked for the columns and types the report's figures need.

A curation output folder or any Parquet dataset with the clip columns will do; every problem is
a one-line ``UserError`` naming the input.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from curation.stats.accumulate import NUMERIC_COLUMNS, REQUIRED_COLUMNS, STRING_COLUMNS
from curation.stats.funnel import REJECT_COLUMNS_USED
from lavie.core.errors import UserError
from lavie.core.manifest import Manifest, open_manifest


@dataclass(frozen=True)
class LabelledManifest:
    label: str
    manifest: Manifest


def default_label(uri: str) -> str:
    """The folder name of a manifest (the file name without extension for a single file)."""
    name = posixpath.basename(uri.rstrip("/")) or uri
    return name[: -len(".parquet")] if name.endswith(".parquet") else name


def open_for_report(uri: str, label: str | None = None, storage_options: dict[str, Any] | None = None) -> LabelledManifest:
    """Open ``uri``, a local path or fsspec URL. Remote settings (an S3 endpoint, keys) come from
    ``storage_options`` or else the environment (AWS_* variables, fsspec's FSSPEC_S3_* config)."""
    manifest = open_manifest(uri, storage_options)
    manifest.require_columns(REQUIRED_COLUMNS)
    schema = manifest.table.schema
    for name in NUMERIC_COLUMNS:
        if name in schema.names:
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
                raise UserError(f"{manifest.table_uri}: column '{name}' has type {kind}, expected a number")
    for name in STRING_COLUMNS:
        if name in schema.names:
            kind = schema.field(name).type
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
                raise UserError(f"{manifest.table_uri}: column '{name}' has type {kind}, expected a string")
    if manifest.rejects is not None and manifest.rejects.files:
        missing = [c for c in REJECT_COLUMNS_USED if c not in manifest.rejects.schema.names]
        if missing:
            raise UserError(f"{manifest.uri.rstrip('/')}/rejects: not a rejects table: missing column(s) {', '.join(missing)}")
    return LabelledManifest(label or default_label(uri), manifest)
