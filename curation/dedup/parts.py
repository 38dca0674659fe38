"""The pieces `lavie dedup` works on: a manifest's parts and their embeddings, grouped into units.

A *part* is one Parquet file of the manifest's ``clips/`` and the embeddings file of the same name
(curation writes ``embeddings/part-S.parquet`` beside ``clips/part-S.parquet``; ``--embeddings``
names another folder of that layout). A *unit* is consecutive parts holding at most
``rows_per_task`` embeddings: what one k-means or assignment task reads. The driver holds the
list of parts (a name and a count each, like curation's shard list), never a row.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lavie.core.errors import UserError
from lavie.core.manifest import EMBEDDINGS_DIR, Manifest, embedding_matrix
from lavie.core.storage import arrow_filesystem, filesystem, join

#: Columns of clips/ that choose which clip of a group stays (read when present).
KEEPER_COLUMNS = ("aesthetic_score", "duration_sec")


@dataclass(frozen=True)
class Part:
    index: int
    name: str  # the file's path under clips/ (and under the embeddings folder)
    clips: str  # URI of the clips file
    embeddings: str | None  # URI of its embeddings file; None when the part has none
    rows: int = 0  # embeddings in it


@dataclass(frozen=True)
class Unit:
    index: int
    parts: tuple[Part, ...]

    @property
    def rows(self) -> int:
        return sum(part.rows for part in self.parts)


def list_parts(manifest: Manifest, embeddings: str | None, options: Mapping[str, Any] | None) -> list[Part]:
    """The manifest's parts, each with its embeddings file when there is one; a one-line
    UserError when no part has any."""
    _, clips_root = arrow_filesystem(manifest.table_uri, options)
    names = sorted(posixpath.relpath(path, clips_root) for path in manifest.table.files)
    base = embeddings or join(manifest.uri, EMBEDDINGS_DIR)
    fs, root = filesystem(base, options)
    present: set[str] = set()
    if fs.isdir(root):
        present = {posixpath.relpath(path, root) for path in fs.find(root) if path.endswith(".parquet")}
    parts = [
        Part(i, name, join(manifest.table_uri, name), join(base, name) if name in present else None)
        for i, name in enumerate(names)
    ]
    if not any(part.embeddings for part in parts):
        where = f"{embeddings}: no embeddings file named like clips/'s parts" if embeddings else (
            f"{manifest.uri}: no embeddings/ beside clips/"
        )  # fmt: skip
        raise UserError(f"{where} (run curation with scoring, which writes them, or give --embeddings)")
    return parts


def count_rows(parts: list[Part], options: Mapping[str, Any] | None) -> list[int]:
    """The number of embeddings in each part, from the Parquet footers (0 without a file)."""
    counts = []
    for part in parts:
        if part.embeddings is None:
            counts.append(0)
            continue
        fs, path = arrow_filesystem(part.embeddings, options)
        with fs.open_input_file(path) as handle:
            counts.append(pq.ParquetFile(handle).metadata.num_rows)
    return counts


def group_units(parts: list[Part], rows_per_task: int) -> list[Unit]:
    """Consecutive parts with embeddings, grouped into units of at most ``rows_per_task`` rows
    (a larger part is a unit of its own)."""
    units: list[Unit] = []
    current: list[Part] = []
    for part in parts:
        if not part.rows:
            continue
        if current and sum(p.rows for p in current) + part.rows > rows_per_task:
            units.append(Unit(len(units), tuple(current)))
            current = []
        current.append(part)
    if current:
        units.append(Unit(len(units), tuple(current)))
    return units


def read_table(uri: str, options: Mapping[str, Any] | None, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file, the ``columns`` of them it has (all by default)."""
    fs, path = arrow_filesystem(uri, options)
    with fs.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        if columns is not None:
            columns = [c for c in columns if c in parquet.schema_arrow.names]
        return parquet.read(columns=columns)


def read_unit(unit: Unit, options: Mapping[str, Any] | None) -> tuple[pa.Table, np.ndarray]:
    """The unit's embedded clips as a table (``clip_id``, ``part``, the keeper columns; sorted by
    part, then ``clip_id``) and their embeddings, ``(n, dim)`` float16, in the same order.

    An embedding whose clip is not in the part's clips file (a ``--embeddings`` folder made for
    more clips) is left out."""
    tables, vectors = [], []
    for part in unit.parts:
        embedded = read_table(part.embeddings, options)
        clips = read_table(part.clips, options, ["clip_id", *KEEPER_COLUMNS])
        for column, kind in (("aesthetic_score", pa.float32()), ("duration_sec", pa.float64())):
            if column not in clips.column_names:
                clips = clips.append_column(column, pa.nulls(clips.num_rows, kind))
        embedded = embedded.append_column("_row", pa.array(np.arange(embedded.num_rows)))
        joined = clips.select(["clip_id", *KEEPER_COLUMNS]).join(embedded.select(["clip_id", "_row"]), "clip_id")
        joined = joined.sort_by("clip_id")
        rows = joined.column("_row").to_numpy()
        vectors.append(embedding_matrix(embedded)[rows])
        joined = joined.drop_columns(["_row"])
        tables.append(joined.append_column("part", pa.array(np.full(joined.num_rows, part.index, np.int32))))
    table = pa.concat_tables(tables)
    dims = {v.shape[1] for v in vectors}
    if len(dims) > 1:
        raise UserError(f"unit {unit.index}: embeddings of different sizes {sorted(dims)} in one manifest")
    return table.select(["clip_id", "part", *KEEPER_COLUMNS]), np.concatenate(vectors)


def embedding_dim(parts: list[Part], options: Mapping[str, Any] | None) -> int:
    """The embeddings' dimension, from the first embeddings file's schema."""
    part = next(p for p in parts if p.embeddings)
    fs, path = arrow_filesystem(part.embeddings, options)
    with fs.open_input_file(path) as handle:
        kind = pq.ParquetFile(handle).schema_arrow.field("embedding").type
    if not pa.types.is_fixed_size_list(kind):
        raise UserError(f"{part.embeddings}: 'embedding' must be a fixed-size list of floats (got {kind})")
    return kind.list_size
