"""Compute every figure of the report (the content of stats.json) by streaming over manifests.

Only the columns a figure needs are read, one record batch at a time, so memory stays bounded by
the batch size and read-ahead (plus the distinct source URIs), whatever the manifest's size.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.dataset as ds

from curation.stats.accumulate import ClipStats
from curation.stats.bins import ALL_BINS
from curation.stats.funnel import REJECT_COLUMNS_USED, RejectCounts, funnel_figures
from curation.stats.manifest import Manifest

STATS_VERSION = 1
BATCH_SIZE = 64 * 1024
# Read-ahead bounds decoded data in flight; pyarrow's defaults (16 batches, 4 files) buy little
# speed here and cost hundreds of MB on wide string columns.
BATCH_READAHEAD = 2
FRAGMENT_READAHEAD = 1


def scan(dataset: ds.Dataset, columns: list[str]) -> Iterator[pa.RecordBatch]:
    return dataset.to_batches(
        columns=columns,
        batch_size=BATCH_SIZE,
        batch_readahead=BATCH_READAHEAD,
        fragment_readahead=FRAGMENT_READAHEAD,
    )


def dataset_stats(manifest: Manifest) -> dict:
    clip_stats = ClipStats(manifest.columns)
    for batch in scan(manifest.clips, clip_stats.projection()):
        clip_stats.add_batch(batch)
    rejects = None
    if manifest.rejects is not None:
        rejects = RejectCounts()
        for batch in scan(manifest.rejects, list(REJECT_COLUMNS_USED)):
            rejects.add_batch(batch)
    figures = clip_stats.to_json()
    funnel = funnel_figures(manifest.run, rejects, clip_stats.clips)
    return {
        "label": manifest.label,
        "uri": manifest.uri,
        "kind": manifest.kind,
        "finished": manifest.finished,
        **figures,
        "funnel": funnel,
    }


def build_stats(manifests: list[Manifest]) -> dict:
    """The whole stats.json document: bin definitions, then one entry per dataset in input order."""
    return {
        "stats_version": STATS_VERSION,
        "bins": {b.name: b.describe() for b in ALL_BINS},
        "datasets": [dataset_stats(m) for m in manifests],
    }
