"""Synthetic media and manifests for tests, benchmarks and smoke runs.

``pattern="index"`` frames are flat grey at :func:`index_level` of the frame index (so a decoded
frame tells which source frame it was, within H.264's error) with a ``border``-pixel red band on
the left and right edges and a blue band on the top and bottom edges (so a test can tell what a
crop removed). ``pattern="texture"`` frames are a moving, smoothly textured scene that costs an
H.264 decoder roughly what natural footage does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curation.schema import CLIP_SCHEMA, CLIPS_DIR, IMAGE_SCHEMA, SUCCESS_FILE, clip_id_for, image_id_for

RED = (255, 0, 0)
BLUE = (0, 0, 255)
_LEVEL_BASE, _LEVEL_STEP = 10, 6


def index_level(index: int) -> int:
    """Grey level that encodes a frame index (indices 0..40 fit in 8 bits)."""
    return _LEVEL_BASE + _LEVEL_STEP * index


def level_index(level: float) -> int:
    """Inverse of :func:`index_level`, tolerant of a few levels of coding error."""
    return round((level - _LEVEL_BASE) / _LEVEL_STEP)


def index_frame(index: int, height: int, width: int, border: int = 8) -> np.ndarray:
    """RGB frame of the ``index`` pattern, shape (height, width, 3)."""
    frame = np.full((height, width, 3), index_level(index), np.uint8)
    frame[:, :border] = RED
    frame[:, width - border :] = RED
    frame[:border, border : width - border] = BLUE
    frame[height - border :, border : width - border] = BLUE
    return frame


def texture_frame(index: int, height: int, width: int) -> np.ndarray:
    """RGB frame of a moving smooth texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = index / 8.0
    r = 128 + 100 * np.sin(x / 37.0 + t) * np.cos(y / 23.0 - 0.5 * t)
    g = 128 + 100 * np.sin((x + y) / 51.0 - t)
    b = 128 + 100 * np.cos(np.hypot(x - width / 2, y - height / 2) / 29.0 - 2 * t)
    rng = np.random.default_rng(index)
    noise = rng.normal(0, 6, (height // 8, width // 8, 1)).repeat(8, 0).repeat(8, 1)
    frame = np.stack([r, g, b], axis=-1) + noise[:height, :width]
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_video(
    path: str | Path,
    num_frames: int,
    height: int,
    width: int,
    fps: int = 24,
    pattern: Literal["index", "texture"] = "index",
    gop: int = 12,
    preset: str = "veryfast",
) -> Path:
    """Write an H.264 mp4 (yuv420p, keyframe every ``gop`` frames)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "crf": "12" if pattern == "index" else "23", "preset": preset}
        for k in range(num_frames):
            array = index_frame(k, height, width) if pattern == "index" else texture_frame(k, height, width)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


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
    folder: str | Path,
    rows: Iterable[Mapping[str, Any]],
    rows_per_group: int | None = None,
    files: int = 1,
) -> Path:
    """Write a curation-style output folder: ``clips/`` Parquet (``files`` files) + ``_SUCCESS``."""
    folder = Path(folder)
    table = pa.Table.from_pylist(list(rows), schema=CLIP_SCHEMA)
    _write_parquet(folder / CLIPS_DIR, table, rows_per_group, files)
    (folder / SUCCESS_FILE).touch()
    return folder


def write_image_manifest(
    folder: str | Path,
    rows: Iterable[Mapping[str, Any]],
    rows_per_group: int | None = None,
    files: int = 1,
) -> Path:
    """Write a LAION-style image manifest: a folder of Parquet files."""
    folder = Path(folder)
    table = pa.Table.from_pylist(list(rows), schema=IMAGE_SCHEMA)
    _write_parquet(folder, table, rows_per_group, files)
    return folder


def _write_parquet(folder: Path, table: pa.Table, rows_per_group: int | None, files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    per_file = math.ceil(table.num_rows / files) if table.num_rows else 0
    for i in range(files):
        part = table.slice(i * per_file, per_file)
        pq.write_table(part, folder / f"part-{i:05d}.parquet", row_group_size=rows_per_group)
