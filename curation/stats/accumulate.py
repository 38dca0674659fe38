"""Streaming accumulators over record batches of the clips table.

Each accumulator holds counts only (the distinct source URIs apart), takes one record batch at a
time and can ``merge`` another of its kind, so a manifest can be summarised file by
file, in any order, on any number of workers, and give the same figures.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.stats.bins import (
    AESTHETIC_BINS,
    CAPTION_WORD_BINS,
    DURATION_BINS,
    HEIGHT_BINS,
    MOTION_BINS,
    OVERLAY_BINS,
    Bins,
)

REQUIRED_COLUMNS = ("source_uri", "duration_sec", "caption_words", "height")
#: The score columns with a histogram of their own, and what the report says where none has a value.
SCORE_HISTOGRAMS: dict[str, tuple[Bins, str]] = {
    "aesthetic_score": (AESTHETIC_BINS, "not scored"),
    "motion_score": (MOTION_BINS, "motion not measured"),
    "overlay_score": (OVERLAY_BINS, "no overlay score"),
}
# Optional: a manifest without them (or with them null on every clip) still gets a report.
OPTIONAL_COLUMNS = ("category", *SCORE_HISTOGRAMS)
NUMERIC_COLUMNS = ("duration_sec", "caption_words", "height", *SCORE_HISTOGRAMS)
STRING_COLUMNS = ("source_uri", "category")

Column = pa.Array | pa.ChunkedArray


def percentages(counts: list[int]) -> list[float]:
    """Each count as a percentage of their sum, rounded to 2 decimals (all 0 for an empty sum)."""
    total = sum(counts)
    return [round(100 * c / total, 2) if total else 0.0 for c in counts]


class Histogram:
    """Counts of a numeric column over fixed bins; nulls and NaNs are counted as ``missing``."""

    def __init__(self, bins: Bins) -> None:
        self.bins = bins
        self.counts = np.zeros(len(bins.labels), dtype=np.int64)
        self.missing = 0

    def add(self, column: Column) -> None:
        values = pc.drop_null(column).to_numpy(zero_copy_only=False)
        self.missing += len(column) - len(values)
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            self.missing += int(len(values) - finite.sum())
            values = values[finite]
        self.counts += np.bincount(self.bins.assign(values), minlength=len(self.counts))

    def merge(self, other: Histogram) -> None:
        self.counts += other.counts
        self.missing += other.missing

    def to_json(self) -> dict:
        counts = [int(c) for c in self.counts]
        labels = list(self.bins.labels)
        return {"labels": labels, "counts": counts, "percent": percentages(counts), "missing": self.missing}


class ValueCounts:
    """Occurrences of each distinct value of a string-like column; nulls counted as ``missing``."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.missing = 0

    def add(self, column: Column) -> None:
        self.missing += column.null_count
        for item in pc.value_counts(pc.drop_null(column)).to_pylist():
            self.counts[item["values"]] += item["counts"]

    def merge(self, other: ValueCounts) -> None:
        self.counts.update(other.counts)
        self.missing += other.missing

    def to_json(self) -> dict:
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        labels = [k for k, _ in ordered]
        counts = [v for _, v in ordered]
        return {"labels": labels, "counts": counts, "percent": percentages(counts), "missing": self.missing}


class DistinctCount:
    """The exact number of distinct non-null strings (the source URIs: "videos").

    Exactness needs every distinct value; they are kept in a Python set, fed with the distinct
    values of each batch (deduplicated by Arrow first, so the Python work is per distinct value
    per batch, not per row). A set grows in small steps, unlike re-deduplicating the whole
    collection with ``pc.unique``, whose hash table briefly needs about five times the values'
    size. Measured (benchmarks/bench_stats.py): 1.25 M distinct URIs add about 200 MB of RSS,
    10 M (every clip its own video) about 1.3 GB.
    """

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, column: Column) -> None:
        self.values.update(pc.unique(pc.drop_null(column)).to_pylist())

    def merge(self, other: DistinctCount) -> None:
        self.values |= other.values

    def count(self) -> int:
        return len(self.values)


class ClipStats:
    """Every figure of the report that comes from the clips table.

    ``columns`` names the columns the dataset has; optional ones it lacks are reported as absent.
    """

    def __init__(self, columns: set[str] | frozenset[str]) -> None:
        self.optional = [c for c in OPTIONAL_COLUMNS if c in columns]
        self.has_category = "category" in self.optional
        self.clips = 0
        self.duration_total = 0.0
        self.videos = DistinctCount()
        self.category = ValueCounts()
        self.duration = Histogram(DURATION_BINS)
        self.caption_words = Histogram(CAPTION_WORD_BINS)
        self.height = Histogram(HEIGHT_BINS)
        self.scores = {column: Histogram(bins) for column, (bins, _) in SCORE_HISTOGRAMS.items()}

    def projection(self) -> list[str]:
        """The columns to read: nothing else of the manifest is ever decoded."""
        return list(REQUIRED_COLUMNS) + self.optional

    def add_batch(self, batch: pa.RecordBatch) -> None:
        self.clips += batch.num_rows
        self.duration_total += pc.sum(batch.column("duration_sec"), min_count=0).as_py() or 0.0
        self.videos.add(batch.column("source_uri"))
        self.duration.add(batch.column("duration_sec"))
        self.caption_words.add(batch.column("caption_words"))
        self.height.add(batch.column("height"))
        if self.has_category:
            self.category.add(batch.column("category"))
        for column, histogram in self.scores.items():
            if column in self.optional:
                histogram.add(batch.column(column))

    def merge(self, other: ClipStats) -> None:
        if self.optional != other.optional:
            raise ValueError("cannot merge statistics of tables with different columns")
        self.clips += other.clips
        self.duration_total += other.duration_total
        for mine, theirs in (
            (self.videos, other.videos),
            (self.category, other.category),
            (self.duration, other.duration),
            (self.caption_words, other.caption_words),
            (self.height, other.height),
            *((histogram, other.scores[column]) for column, histogram in self.scores.items()),
        ):
            mine.merge(theirs)

    def to_json(self) -> dict:
        return {
            "totals": {
                "videos": self.videos.count(),
                "clips": self.clips,
                "hours": round(self.duration_total / 3600, 4),
                "duration_sec": round(self.duration_total, 3),
            },
            "category": _panel(self.category, "category", "no categories", self.has_category),
            "duration_sec": _panel(self.duration, "duration_sec", "no durations"),
            "caption_words": _panel(self.caption_words, "caption_words", "no caption lengths"),
            "resolution": _panel(self.height, "height", "no heights"),
            **{
                column: _panel(self.scores[column], column, note, column in self.optional)
                for column, (_, note) in SCORE_HISTOGRAMS.items()
            },
        }


def _panel(figures: Histogram | ValueCounts, column: str, note: str, has_column: bool = True) -> dict:
    """One figure's numbers; ``available`` is false, with ``note`` and why, when no clip has a value."""
    if not has_column:
        return {"available": False, "note": note, "why": f"no '{column}' column"}
    numbers = figures.to_json()
    if sum(numbers["counts"]) == 0:
        why = f"'{column}' is null on every clip" if numbers["missing"] else "no clips"
        return {"available": False, "note": note, "why": why, "missing": numbers["missing"]}
    return {"available": True, **numbers}
