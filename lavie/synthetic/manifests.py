"""Generated images and manifests in the platform's schemas (clip rows, image rows, image sets)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from lavie.core.manifest import CLIP_SCHEMA, CLIPS_DIR, IMAGE_SCHEMA, SUCCESS_FILE, clip_id_for, image_id_for
from lavie.synthetic.videos import index_frame, index_level

IMAGE_CAPTIONS = (
    "a red car on a city road at night",
    "a blue sky over the sea",
    "a cat sitting on a wooden table",
    "a dog running across a green field",
    "an old library with dusty books",
    "a mountain road at sunrise",
)


def write_image(path: str | Path, height: int, width: int, level: int) -> Path:
    """Write a PNG/JPEG (by suffix) of flat grey ``level`` with the red/blue border bands."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = index_frame(0, height, width)
    frame[(frame == index_level(0)).all(axis=-1)] = level
    Image.fromarray(frame).save(path)
    return path


def clip_row(
    source_uri: str,
    start_frame: int,
    end_frame: int,
    fps: float | None,
    width: int | None,
    height: int | None,
    caption: str,
    source_dataset: str = "synthetic",
) -> dict[str, Any]:
    """A full CLIP_SCHEMA row (unscored)."""
    row = dict.fromkeys(CLIP_SCHEMA.names)
    n = end_frame - start_frame
    row.update(
        clip_id=clip_id_for(source_uri, start_frame),
        source_uri=source_uri,
        source_dataset=source_dataset,
        caption=caption,
        caption_words=len(caption.split()),
        start_frame=start_frame,
        end_frame=end_frame,
        num_frames=n,
        fps=fps,
        width=width,
        height=height,
        codec="h264",
    )
    if fps:
        row.update(start_sec=start_frame / fps, end_sec=end_frame / fps, duration_sec=n / fps)
    return row


def image_row(uri: str, caption: str, width: int | None, height: int | None) -> dict[str, Any]:
    """A full IMAGE_SCHEMA row."""
    return {
        "image_id": image_id_for(uri),
        "uri": uri,
        "caption": caption,
        "width": width,
        "height": height,
        "aesthetic_score": None,
    }


def write_clip_manifest(
    folder: str | Path, rows: Iterable[Mapping[str, Any]], rows_per_group: int | None = None, files: int = 1
) -> Path:
    """Write a curation-style output folder: ``clips/`` Parquet (``files`` files) + ``_SUCCESS``."""
    folder = Path(folder)
    table = pa.Table.from_pylist(list(rows), schema=CLIP_SCHEMA)
    _write_parquet(folder / CLIPS_DIR, table, rows_per_group, files)
    (folder / SUCCESS_FILE).touch()
    return folder


def write_image_manifest(
    folder: str | Path, rows: Iterable[Mapping[str, Any]], rows_per_group: int | None = None, files: int = 1
) -> Path:
    """Write a LAION-style image manifest: a folder of Parquet files."""
    folder = Path(folder)
    table = pa.Table.from_pylist(list(rows), schema=IMAGE_SCHEMA)
    _write_parquet(folder, table, rows_per_group, files)
    return folder


def write_image_set(
    manifest: str | Path, files: str | Path, count: int = 12, height: int = 96, width: int = 128
) -> Path:
    """``count`` flat-grey PNGs of distinct levels under ``files`` with captions, and their image
    manifest in ``manifest`` (kept apart: a manifest folder holds Parquet files only)."""
    rows = []
    for i in range(count):
        path = write_image(Path(files) / f"image_{i:03d}.png", height, width, level=40 + (200 * i) // max(1, count))
        rows.append(image_row(str(path.resolve()), IMAGE_CAPTIONS[i % len(IMAGE_CAPTIONS)], width, height))
    return write_image_manifest(manifest, rows)


def _write_parquet(folder: Path, table: pa.Table, rows_per_group: int | None, files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    per_file = math.ceil(table.num_rows / files) if table.num_rows else 0
    for i in range(files):
        part = table.slice(i * per_file, per_file)
        pq.write_table(part, folder / f"part-{i:05d}.parquet", row_group_size=rows_per_group)
