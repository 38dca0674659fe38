"""Manifest indexing and sharded, shuffled, streaming row access.

A manifest (opened by :func:`lavie.core.manifest.open_manifest`, which applies the ``_SUCCESS``
rule and the schemas) is indexed from Parquet footers only (files, row groups, row counts); rows are read one
shuffle block (whole row groups, about ``shuffle_rows`` rows, projected to the columns the loader
needs) at a time, so memory stays bounded whatever the manifest size.

Sharding: the N rows of a source are split into ``world_size`` contiguous ranges of
``ceil(N / world_size)`` rows, wrapping around to the first rows to pad the last ranges (the
``DistributedSampler`` convention). Ranks are disjoint when ``world_size`` divides N; every rank
has the same shard length, so epochs stay aligned across ranks.

Order within an epoch: the rank's row-group segments are permuted, consecutive segments grouped
into blocks of at least ``shuffle_rows`` rows, and the rows of each block permuted; all keyed by
(seed, source, rank, epoch), so any (epoch, position) maps to the same row in every process.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from lavie.core.errors import UserError, message_line
from lavie.core.manifest import CLIP_COLUMNS, IMAGE_COLUMNS, KIND_NAMES, open_manifest
from lavie.core.storage import arrow_filesystem
from training.data.config import DataConfig, SourceConfig
from training.rng import keyed_numpy

Kind = Literal["video", "image"]  # a source's kind: what the manifest kinds are called in data configs
MANIFEST_KIND: dict[Kind, str] = {"video": "clips", "image": "images"}

# Columns the loader reads, by name, from the shared schema (extra columns are never read).
VIDEO_COLUMNS: tuple[str, ...] = tuple(
    c
    for c in CLIP_COLUMNS
    if c in {"source_uri", "start_frame", "end_frame", "fps", "width", "height", "caption"}
)
IMAGE_READ_COLUMNS: tuple[str, ...] = tuple(
    c for c in IMAGE_COLUMNS if c in {"uri", "caption", "width", "height"}
)
# Read when present, for traceability of samples.
OPTIONAL_COLUMNS: dict[Kind, str] = {"video": "clip_id", "image": "image_id"}
REQUIRED_COLUMNS: dict[Kind, tuple[str, ...]] = {"video": VIDEO_COLUMNS, "image": IMAGE_READ_COLUMNS}

_SHARD_ORDER_STREAM = 1
_BLOCK_ROWS_STREAM = 2


@dataclass(frozen=True)
class ManifestIndex:
    """Index of one source's manifest: its Parquet files and row groups, from footers only."""

    source: str
    uri: str
    kind: Kind
    columns: tuple[str, ...]
    files: tuple[str, ...]
    # One entry per non-empty row group: index into ``files``, row-group id, row count.
    group_file: np.ndarray
    group_id: np.ndarray
    group_rows: np.ndarray
    storage_options: dict[str, Any]

    @property
    def num_rows(self) -> int:
        return int(self.group_rows.sum())

    def read_group(self, group: int) -> pa.Table:
        """Read one row group, projected to ``columns``."""
        fs, _ = arrow_filesystem(self.uri, self.storage_options)
        fragment = ds.ParquetFileFormat().make_fragment(
            self.files[self.group_file[group]], filesystem=fs, row_groups=[int(self.group_id[group])]
        )
        return fragment.to_table(columns=list(self.columns))


def index_manifest(
    source: str, uri: str, kind: Kind, storage_options: dict[str, Any] | None = None
) -> ManifestIndex:
    """Index the manifest at ``uri`` for source ``source``: it must exist, be finished, be of
    ``kind`` with its columns, and have rows. Every problem is a one-line :class:`UserError`."""
    storage_options = dict(storage_options or {})
    where = f"data source '{source}': manifest"
    try:
        manifest = open_manifest(uri, storage_options)
        manifest.require_finished()
        found = {"clips": "video", "images": "image"}.get(manifest.kind or "")
        if found is None or not set(REQUIRED_COLUMNS[found]) <= manifest.columns:
            raise UserError(
                f"{uri} is neither {KIND_NAMES['clips']} (columns {', '.join(VIDEO_COLUMNS)}) "
                f"nor {KIND_NAMES['images']} (columns {', '.join(IMAGE_READ_COLUMNS)})"
            )
        if found != kind:
            raise UserError(f"{uri} is {KIND_NAMES[MANIFEST_KIND[found]]} but the source has kind '{kind}'")
        files, group_file, group_id, group_rows = [], [], [], []
        for fragment in manifest.table.get_fragments():
            fragment.ensure_complete_metadata()
            files.append(fragment.path)
            for group in fragment.row_groups:
                if group.num_rows > 0:
                    group_file.append(len(files) - 1)
                    group_id.append(group.id)
                    group_rows.append(group.num_rows)
    except UserError as exc:
        raise UserError(f"{where} {exc}") from None
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise UserError(f"{where} {uri} cannot be read: {message_line(exc)}") from None
    if not group_rows:
        raise UserError(f"{where} {uri} has no rows")
    optional = OPTIONAL_COLUMNS[kind]
    columns = REQUIRED_COLUMNS[kind] + ((optional,) if optional in manifest.columns else ())
    return ManifestIndex(
        source=source,
        uri=manifest.table_uri,
        kind=kind,
        columns=columns,
        files=tuple(files),
        group_file=np.asarray(group_file, dtype=np.int64),
        group_id=np.asarray(group_id, dtype=np.int64),
        group_rows=np.asarray(group_rows, dtype=np.int64),
        storage_options=storage_options,
    )


def max_fps(manifest: ManifestIndex) -> float | None:
    """The highest frame rate among a clip manifest's rows (its ``fps`` column only is read);
    None when no row records one."""
    import pyarrow.compute as pc

    fs, _ = arrow_filesystem(manifest.uri, manifest.storage_options)
    table = ds.dataset(list(manifest.files), format="parquet", filesystem=fs).to_table(columns=["fps"])
    value = pc.max(table.column("fps")).as_py()
    return float(value) if value is not None else None


class ShardReader:
    """Rows of one rank's shard of a manifest, by (epoch, position) in a shuffled epoch order."""

    def __init__(
        self,
        manifest: ManifestIndex,
        rank: int,
        world_size: int,
        seed: int,
        shuffle_rows: int,
        cached_blocks: int = 2,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.manifest = manifest
        self.rank = rank
        self._seed = seed
        self._source_key = zlib.crc32(manifest.source.encode())
        self._block_rows = shuffle_rows
        self._cached_blocks = cached_blocks
        total = manifest.num_rows
        self.length = math.ceil(total / world_size)
        self._segments = _segments(manifest.group_rows, rank * self.length, self.length)
        self._layouts: OrderedDict[int, tuple[list[np.ndarray], np.ndarray]] = OrderedDict()
        self._blocks: OrderedDict[tuple[int, int], tuple[pa.Table, np.ndarray]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        # Caches stay behind when the reader is sent to a DataLoader worker.
        state = dict(self.__dict__)
        state["_layouts"], state["_blocks"] = OrderedDict(), OrderedDict()
        return state

    def row(self, epoch: int, position: int) -> dict[str, Any]:
        """The row at ``position`` (0 <= position < length) of ``epoch``'s order."""
        if not 0 <= position < self.length:
            raise IndexError(f"position {position} outside shard of {self.length} rows")
        blocks, starts = self._layout(epoch)
        block = int(np.searchsorted(starts, position, side="right")) - 1
        table, order = self._block(epoch, block, blocks[block])
        index = int(order[position - starts[block]])
        return {name: table.column(name)[index].as_py() for name in table.column_names}

    def _layout(self, epoch: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Segment indices of each block of ``epoch`` and each block's first position."""
        if epoch not in self._layouts:
            rng = keyed_numpy(self._seed, _SHARD_ORDER_STREAM, self._source_key, self.rank, epoch)
            blocks, sizes, block, size = [], [], [], 0
            for segment in rng.permutation(len(self._segments)):
                block.append(segment)
                size += self._segments[segment][2]
                if size >= self._block_rows:
                    blocks.append(np.asarray(block))
                    sizes.append(size)
                    block, size = [], 0
            if block:
                blocks.append(np.asarray(block))
                sizes.append(size)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            self._layouts[epoch] = (blocks, starts)
            while len(self._layouts) > 2:
                self._layouts.popitem(last=False)
        return self._layouts[epoch]

    def _block(self, epoch: int, block: int, segments: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        key = (epoch, block)
        if key in self._blocks:
            self._blocks.move_to_end(key)
            return self._blocks[key]
        parts = []
        for s in segments:
            group, lo, count = self._segments[s]
            parts.append(self.manifest.read_group(group).slice(lo, count))
        table = pa.concat_tables(parts).combine_chunks()
        rng = keyed_numpy(self._seed, _BLOCK_ROWS_STREAM, self._source_key, self.rank, epoch, block)
        entry = (table, rng.permutation(table.num_rows))
        self._blocks[key] = entry
        while len(self._blocks) > self._cached_blocks:
            self._blocks.popitem(last=False)
        return entry


def _segments(group_rows: np.ndarray, start: int, length: int) -> list[tuple[int, int, int]]:
    """(row group, first row in group, row count) covering global rows [start, start + length),
    wrapping past the end of the manifest to its first rows."""
    total = int(group_rows.sum())
    group_starts = np.concatenate([[0], np.cumsum(group_rows)[:-1]])
    segments = []
    position, remaining = start % total, length
    while remaining > 0:
        group = int(np.searchsorted(group_starts, position, side="right")) - 1
        lo = position - int(group_starts[group])
        count = min(int(group_rows[group]) - lo, remaining)
        segments.append((group, lo, count))
        remaining -= count
        position = (position + count) % total
    return segments


def validate_sources(config: DataConfig) -> dict[str, ManifestIndex]:
    """Pre-flight check of every source, meant to run on the driver before any worker starts.

    Raises a one-line :class:`UserError` for a missing manifest, a manifest of the wrong kind, a
    manifest without rows, or a step at which every source of a kind has weight zero. Returns the
    indexed manifests by source name.
    """
    manifests = {
        s.name: index_manifest(s.name, s.manifest, s.kind, config.storage_options)
        for s in config.sources
    }
    clips = "video" if config.image_clips is None else "clip"
    kinds: list[tuple[str, list[SourceConfig]]] = [(clips, config.clip_sources)]
    if config.images_per_sample > 0:
        kinds.append(("image", config.image_sources))
    for kind, sources in kinds:
        # Weights are piecewise linear and non-negative, so their sum is zero somewhere iff it
        # is zero at step 0 or at one of the knots.
        steps = sorted({0, *(step for s in sources for step, _ in s.schedule)})
        for step in steps:
            if sum(s.weight_at(step) for s in sources) <= 0:
                names = ", ".join(s.name for s in sources)
                raise UserError(f"data sources: every {kind} source ({names}) has weight 0 at step {step}")
    return manifests
