"""Compute every figure of the report (the content of stats.json) by streaming over manifests.

Only the columns a figure needs are read, one record batch at a time, so memory stays bounded by
one row group of those columns (plus the distinct source URIs), whatever the manifest's size.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from curation.stats.accumulate import ClipStats
from curation.stats.bins import ALL_BINS
from curation.stats.funnel import REJECT_COLUMNS_USED, RejectCounts, funnel_figures
from curation.stats.inputs import LabelledManifest
from curation.stats.samples import SampleDraw, SampleOptions, score_columns
from lavie.core.errors import UserError, first_line

STATS_VERSION = 1
BATCH_SIZE = 64 * 1024


def scan(dataset: ds.FileSystemDataset, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns``, one file after the other.

    Each file is read with ``ParquetFile.iter_batches``, which decodes one row group at a time:
    pyarrow's dataset scanner reads ahead across batches and files and, with a consumer slower
    than the decoder, held ~300 MB more at 10 M rows for no gain in speed. A column that a file
    lacks comes back as nulls (typed as in the dataset's schema).
    """
    for path in dataset.files:
        try:
            with dataset.filesystem.open_input_file(path) as f:
                parquet = pq.ParquetFile(f)
                present = [c for c in columns if c in parquet.schema_arrow.names]
                for batch in parquet.iter_batches(batch_size=BATCH_SIZE, columns=present):
                    arrays = [
                        batch.column(c) if c in present else pa.nulls(batch.num_rows, dataset.schema.field(c).type)
                        for c in columns
                    ]
                    yield pa.RecordBatch.from_arrays(arrays, names=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{path}: cannot be read as Parquet ({first_line(exc)})") from None


def dataset_stats(labelled: LabelledManifest, draw: SampleDraw | None = None) -> dict:
    """One dataset's figures; when ``draw`` is given, the same pass over the data feeds it too."""
    manifest = labelled.manifest
    clip_stats = ClipStats(manifest.columns)
    columns = clip_stats.projection()
    if draw is not None:
        columns = list(dict.fromkeys(columns + draw.projection()))
    for batch in scan(manifest.table, columns):
        clip_stats.add_batch(batch)
        if draw is not None:
            draw.add_clips(batch)
    rejects = None
    if manifest.rejects is not None:
        rejects = RejectCounts()
        columns = list(REJECT_COLUMNS_USED)
        if draw is not None:
            columns = list(dict.fromkeys(columns + draw.reject_projection()))
        for batch in scan(manifest.rejects, columns):
            rejects.add_batch(batch)
            if draw is not None:
                draw.add_rejects(batch)
    figures = clip_stats.to_json()
    scoring = (manifest.run or {}).get("scoring")
    if isinstance(scoring, dict) and scoring.get("skipped_reason") and not figures["aesthetic_score"]["available"]:
        # The run says why nothing was scored: more use to the reader than "null on every clip".
        figures["aesthetic_score"]["why"] = f"run.json: {scoring['skipped_reason']}"
    funnel = funnel_figures(manifest.run, rejects, clip_stats.clips)
    return {
        "label": labelled.label,
        "uri": manifest.uri,
        "kind": manifest.layout,
        "finished": manifest.finished,
        **figures,
        "funnel": funnel,
    }


def new_draw(labelled: LabelledManifest, options: SampleOptions, manifests: int) -> SampleDraw:
    """The empty draw of one of ``manifests`` manifests."""
    manifest = labelled.manifest
    rejects = manifest.rejects
    reject_columns = frozenset(rejects.schema.names) if rejects is not None and rejects.files else None
    return SampleDraw(
        options.per_group, options.index_share(manifests), options.seed, manifest.columns,
        score_columns(manifest.table.schema), reject_columns,
    )  # fmt: skip


def reject_order(funnel: dict) -> list[tuple[str, str]]:
    """(stage, reason) in the funnel's order: stages in pipeline order, reasons largest first."""
    return [(s["stage"], reason) for s in funnel.get("stages") or [] for reason in s["reasons"]]


def build_stats(manifests: list[LabelledManifest], options: SampleOptions | None = None) -> dict:
    """The whole stats.json document: bin definitions, one entry per dataset in input order, and
    the drawn examples (``samples``: the options, then one entry per dataset) without previews."""
    options = options or SampleOptions(per_group=0)
    datasets, drawn = [], []
    for labelled in manifests:
        draw = new_draw(labelled, options, len(manifests)) if options.enabled else None
        figures = dataset_stats(labelled, draw)
        datasets.append(figures)
        if draw is not None:
            drawn.append({"label": labelled.label, **draw.to_json(figures, reject_order(figures["funnel"]))})
    samples: dict = options.to_json()
    if options.enabled:
        samples["datasets"] = drawn
    return {
        "stats_version": STATS_VERSION,
        "bins": {b.name: b.describe() for b in ALL_BINS},
        "datasets": datasets,
        "samples": samples,
    }
