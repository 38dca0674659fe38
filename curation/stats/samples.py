"""The example clips of the report: a seeded random draw per group, made during the statistics pass.

Groups are the bins and categories of the report's panels (aesthetic bucket, duration bucket,
height class, category), each reject (stage, reason), the lowest and highest clips of every other
score column, and one group for the clip index (kept clips and rejects together).

A draw within a group keeps the ``k`` rows with the smallest ``hash(seed, row id)``: the same
seed gives the same clips whatever the order of the files or batches, two draws over parts of a
manifest ``merge`` into the draw over the whole, and no more than ``k`` rows per group are ever
held, so the driver's memory does not grow with the manifest. Each batch is first filtered with
numpy against the current ``k``-th key of every group, so after the first batches almost no row
reaches Python. Row ids are ``clip_id`` (for a whole-input reject, the source and the stage).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from curation.stats.bins import AESTHETIC_BINS, DURATION_BINS, HEIGHT_BINS, MOTION_BINS, OVERLAY_BINS, Bins
from curation.stats.html_report import MAX_CATEGORIES
from lavie.core.errors import UserError

DEFAULT_SAMPLES = 6
DEFAULT_INDEX_CLIPS = 500
DEFAULT_SEED = 0
SCORE_SUFFIX = "_score"
#: What a sample shows of a kept clip, and of a reject (where the rejects table has them).
CLIP_FIELDS = ("clip_id", "source_uri", "category", "caption", "start_frame", "end_frame", "fps", "width", "height",
               "duration_sec")  # fmt: skip
REJECT_FIELDS = ("clip_id", "source_uri", "caption", "start_frame", "end_frame", "height", "stage", "reason", "detail")
#: The panels whose bins or values group the kept clips: (panel key in stats.json, column, bins).
#: A ``*_score`` column without a panel here gets its lowest and highest clips instead.
GROUPINGS: tuple[tuple[str, str, Bins | None], ...] = (
    ("category", "category", None),
    ("duration_sec", "duration_sec", DURATION_BINS),
    ("aesthetic_score", "aesthetic_score", AESTHETIC_BINS),
    ("motion_score", "motion_score", MOTION_BINS),
    ("overlay_score", "overlay_score", OVERLAY_BINS),
    ("resolution", "height", HEIGHT_BINS),
)
_SEP = "\x1f"  # joins stage and reason into one group key


@dataclass(frozen=True)
class SampleOptions:
    """What to draw: ``per_group`` clips per group (0: no examples at all, and no clip index),
    ``index_clips`` clips for the clip index over all manifests (0: no index), from ``seed``."""

    per_group: int = DEFAULT_SAMPLES
    index_clips: int = DEFAULT_INDEX_CLIPS
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.per_group < 0:
            raise UserError(f"--samples must be 0 or more (got {self.per_group})")
        if self.index_clips < 0:
            raise UserError(f"--index-clips must be 0 or more (got {self.index_clips})")

    @property
    def enabled(self) -> bool:
        return self.per_group > 0

    def index_share(self, manifests: int) -> int:
        """Each manifest's part of the clip index: ``index_clips`` split evenly (at least one clip)."""
        return max(1, self.index_clips // max(1, manifests)) if self.enabled and self.index_clips else 0

    def to_json(self) -> dict:
        return {"per_group": self.per_group, "index_clips": self.index_clips if self.enabled else 0, "seed": self.seed}


def score_columns(schema: pa.Schema) -> list[str]:
    """The numeric ``*_score`` columns of a clips table, in schema order."""
    return [
        f.name for f in schema
        if f.name.endswith(SCORE_SUFFIX) and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    ]  # fmt: skip


def row_hashes(ids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """A uint64 per id, fixed by ``seed`` (SipHash keyed by the seed: stable across runs and machines)."""
    key = hashlib.sha256(str(seed).encode()).hexdigest()[:16]
    values = pc.fill_null(ids, "").to_numpy(zero_copy_only=False)
    return pd.util.hash_array(values.astype(object), hash_key=key, categorize=False)


def first_per_group(codes: np.ndarray, order_keys: tuple[np.ndarray, ...], k: int) -> np.ndarray:
    """Indices of the first ``k`` rows of each group (``codes``), ordered by ``order_keys``
    (the last one primary, as in ``np.lexsort``); rows with a negative code are in no group."""
    inside = np.nonzero(codes >= 0)[0]
    if not len(inside) or k <= 0:
        return inside[:0]
    order = inside[np.lexsort(tuple(key[inside] for key in order_keys) + (codes[inside],))]
    grouped = codes[order]
    starts = np.r_[0, np.nonzero(np.diff(grouped))[0] + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order[rank < k]


@dataclass
class Reservoir:
    """Per group, the ``k`` entries with the smallest keys (tuples); mergeable."""

    k: int
    groups: dict[Hashable, list[tuple[tuple, dict[str, Any]]]] = field(default_factory=dict)

    def worst(self, group: Hashable) -> tuple | None:
        """The largest key kept for ``group`` when it is full (what a new entry must beat), else None."""
        entries = self.groups.get(group)
        return entries[-1][0] if entries is not None and len(entries) >= self.k else None

    def offer(self, group: Hashable, key: tuple, row: dict[str, Any]) -> None:
        entries = self.groups.setdefault(group, [])
        if len(entries) >= self.k and key >= entries[-1][0]:
            return
        if any(existing == key for existing, _ in entries):  # the same row offered twice (a merge)
            return
        bisect.insort(entries, (key, row), key=lambda entry: entry[0])
        del entries[self.k :]

    def merge(self, other: Reservoir) -> None:
        for group, entries in other.groups.items():
            for key, row in entries:
                self.offer(group, key, row)

    def rows(self, group: Hashable) -> list[dict[str, Any]]:
        return [row for _, row in self.groups.get(group, [])]


def _passes(codes: np.ndarray, labels: list[Hashable], reservoir: Reservoir, hashes: np.ndarray) -> np.ndarray:
    """Which rows could enter their group's draw: every row of a group not yet full, else the
    rows whose hash is below the group's worst kept hash."""
    full = np.array([reservoir.worst(label) is not None for label in labels] + [False])
    limit = np.array([(reservoir.worst(label) or (0,))[0] for label in labels] + [0], dtype=np.uint64)
    safe = np.where(codes >= 0, codes, len(labels))
    return (codes >= 0) & (~full[safe] | (hashes < limit[safe]))


class SampleDraw:
    """The draw of one manifest: fed the clip batches (and reject batches) of the statistics pass.

    ``columns`` and ``score_names`` are those of the clips table; ``reject_columns`` those of its
    rejects table (None without one).
    """

    def __init__(
        self, per_group: int, index_size: int, seed: int, columns: frozenset[str], score_names: list[str],
        reject_columns: frozenset[str] | None = None,
    ) -> None:  # fmt: skip
        self.per_group, self.index_size, self.seed = per_group, index_size, seed
        self.columns = columns
        self.scores = list(score_names)
        bucketed = {column for _, column, _ in GROUPINGS}
        self.extremes = [name for name in self.scores if name not in bucketed]
        self.groupings = [(panel, column, bins) for panel, column, bins in GROUPINGS if column in columns]
        self.reject_columns = reject_columns
        self.panels = {panel: Reservoir(per_group) for panel, _, _ in self.groupings}
        self.lowest = {name: Reservoir(per_group) for name in self.extremes}
        self.highest = {name: Reservoir(per_group) for name in self.extremes}
        self.rejects = Reservoir(per_group)
        self.index = Reservoir(index_size)
        self._rows_seen = 0

    def projection(self) -> list[str]:
        """The clip columns the draw reads (besides those of the figures)."""
        wanted = [*CLIP_FIELDS, *self.scores]
        return [c for c in dict.fromkeys(wanted) if c in self.columns]

    def reject_projection(self) -> list[str]:
        return [c for c in REJECT_FIELDS if self.reject_columns and c in self.reject_columns]

    # ------------------------------------------------------------------------- clips
    def _clip_ids(self, batch: pa.RecordBatch) -> pa.Array:
        if "clip_id" in batch.schema.names:
            return batch.column("clip_id")
        # A plain dataset without ids: the source and the clip's start (or its row number) stand in.
        if "start_frame" in batch.schema.names:
            suffix = pc.cast(batch.column("start_frame"), pa.string())
        else:
            suffix = pa.array(np.arange(self._rows_seen, self._rows_seen + batch.num_rows)).cast(pa.string())
        return pc.binary_join_element_wise(batch.column("source_uri"), pc.fill_null(suffix, ""), "#")

    def add_clips(self, batch: pa.RecordBatch) -> None:
        hashes = row_hashes(self._clip_ids(batch), self.seed)
        self._rows_seen += batch.num_rows
        chosen: dict[int, list[tuple[Reservoir, Hashable, tuple]]] = {}

        def choose(reservoir: Reservoir, codes: np.ndarray, labels: list[Hashable], keys: tuple[np.ndarray, ...],
                   key_of: Any, by_hash_only: bool = True) -> None:  # fmt: skip
            if by_hash_only:
                codes = np.where(_passes(codes, labels, reservoir, hashes), codes, -1)
            for i in first_per_group(codes, keys, reservoir.k):
                chosen.setdefault(int(i), []).append((reservoir, labels[codes[i]], key_of(int(i))))

        by_hash = (hashes,)
        for panel, column, bins in self.groupings:
            codes, labels = _codes(batch.column(column), bins)
            choose(self.panels[panel], codes, labels, by_hash, lambda i: (int(hashes[i]),))
        for name in self.extremes:
            values = _floats(batch.column(name))
            codes = np.where(np.isfinite(values), 0, -1)
            for reservoir, sign in ((self.lowest[name], 1.0), (self.highest[name], -1.0)):
                signed = sign * np.nan_to_num(values)
                worst = reservoir.worst(name)
                if worst is not None:  # only values at least as extreme as the k-th kept one
                    codes_here = np.where(signed <= worst[0], codes, -1)
                else:
                    codes_here = codes
                choose(reservoir, codes_here, [name], (hashes, signed),
                       lambda i, s=signed: (float(s[i]), int(hashes[i])), by_hash_only=False)  # fmt: skip
        if self.index_size:
            choose(self.index, np.zeros(batch.num_rows, dtype=np.int64), ["index"], by_hash,
                   lambda i: (int(hashes[i]),))  # fmt: skip
        self._offer(batch, chosen, [*self.projection()], "clip")

    # ------------------------------------------------------------------------- rejects
    def add_rejects(self, batch: pa.RecordBatch) -> None:
        """Reject rows (``stage``, ``reason``, ``clip_id`` and what else :meth:`reject_projection` names)."""
        names = batch.schema.names
        whole = pc.binary_join_element_wise(batch.column("source_uri"), batch.column("stage"), "#") \
            if "source_uri" in names else batch.column("stage")  # fmt: skip
        ids = pc.if_else(pc.is_null(batch.column("clip_id")), whole, batch.column("clip_id"))
        hashes = row_hashes(ids, self.seed)
        joined = pc.binary_join_element_wise(batch.column("stage"), batch.column("reason"), _SEP)
        codes, labels = _codes(joined, None)
        labels = [tuple(str(label).split(_SEP, 1)) for label in labels]
        chosen: dict[int, list[tuple[Reservoir, Hashable, tuple]]] = {}
        for reservoir, group_codes, group_labels in (
            (self.rejects, codes, labels),
            (self.index, np.zeros(batch.num_rows, dtype=np.int64) if self.index_size else np.full(batch.num_rows, -1),
             ["index"]),
        ):  # fmt: skip
            group_codes = np.where(_passes(group_codes, group_labels, reservoir, hashes), group_codes, -1)
            for i in first_per_group(group_codes, (hashes,), reservoir.k):
                chosen.setdefault(int(i), []).append((reservoir, group_labels[group_codes[i]], (int(hashes[i]),)))
        self._offer(batch, chosen, [c for c in REJECT_FIELDS if c in names], "reject")

    def _offer(self, batch: pa.RecordBatch, chosen: dict, fields: list[str], kind: str) -> None:
        """Turn the chosen rows (only they) into dicts and offer them to their reservoirs."""
        if not chosen:
            return
        indices = sorted(chosen)
        rows = batch.select(fields).take(pa.array(indices)).to_pylist()
        for i, row in zip(indices, rows):
            row["kind"] = kind
            for reservoir, group, key in chosen[i]:
                reservoir.offer(group, key, row)

    def merge(self, other: SampleDraw) -> None:
        """Add another part's draw: the result is the draw over both parts."""
        for mine, theirs in (
            *((self.panels[p], other.panels[p]) for p in self.panels),
            *((self.lowest[n], other.lowest[n]) for n in self.extremes),
            *((self.highest[n], other.highest[n]) for n in self.extremes),
            (self.rejects, other.rejects),
            (self.index, other.index),
        ):
            mine.merge(theirs)

    # ------------------------------------------------------------------------- the result
    def to_json(self, figures: dict, reject_order: Iterable[tuple[str, str]]) -> dict:
        """The drawn rows by group, in the order of the report's panels: bins in their order,
        categories as the category panel lists them, rejects in ``reject_order`` (the funnel's)."""
        panels = {}
        for panel, _, _ in self.groupings:
            labels = figures[panel]["labels"] if figures.get(panel, {}).get("available") else []
            if panel == "category":
                labels = labels[:MAX_CATEGORIES]  # the categories the chart shows
            panels[panel] = [{"label": label, "clips": self.panels[panel].rows(label)} for label in labels]
        scores = [
            {"column": name, "lowest": self.lowest[name].rows(name), "highest": self.highest[name].rows(name)}
            for name in self.extremes
        ]
        order = list(reject_order)
        order += sorted(set(self.rejects.groups) - set(order))
        rejects = [
            {"stage": stage, "reason": reason, "clips": self.rejects.rows((stage, reason))}
            for stage, reason in order
            if self.rejects.rows((stage, reason))
        ]
        return {"score_columns": self.scores, "panels": panels, "scores": scores, "rejects": rejects,
                "index": self.index.rows("index")}  # fmt: skip



def drawn_rows(drawn: dict) -> Iterator[dict[str, Any]]:
    """Every row of one dataset's :meth:`SampleDraw.to_json` (a row in several groups comes once
    per group)."""
    for groups in drawn["panels"].values():
        for group in groups:
            yield from group["clips"]
    for score in drawn["scores"]:
        yield from score["lowest"]
        yield from score["highest"]
    for group in drawn["rejects"]:
        yield from group["clips"]
    yield from drawn["index"]


def _floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64, nulls as NaN."""
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


def _codes(column: pa.Array | pa.ChunkedArray, bins: Bins | None) -> tuple[np.ndarray, list[Hashable]]:
    """Each row's group index (-1 for none) and the group labels: the bins of a numeric column,
    else the distinct values of a string-like one."""
    if bins is not None:
        values = _floats(column)
        finite = np.isfinite(values)
        codes = np.full(len(values), -1, dtype=np.int64)
        codes[finite] = bins.assign(values[finite])
        return codes, list(bins.labels)
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary.to_pylist()
