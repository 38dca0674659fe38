"""Sample the frames the model stages look at: by default 10 %, 50 % and 90 % into each clip.

decord seeks straight to the wanted frames and scales them in the decoder, so a clip costs a few
frame decodes, not a pass over its whole range.
"""

from __future__ import annotations

import time

import numpy as np

from curation.errors import first_line
from curation.rows import FRAMES, Row, add_seconds, is_rejected, reject
from curation.video_io import open_source

FRAME_SIZE = 224  # CLIP's input side; frames are cropped square after a shortest-side resize


def frame_indices(start_frame: int, num_frames: int, positions: tuple[float, ...]) -> list[int]:
    return [start_frame + int(round(p * (num_frames - 1))) for p in positions]


def _decode_size(width: int, height: int, side: int) -> tuple[int, int]:
    scale = side / min(width, height)
    return max(side, int(round(width * scale))), max(side, int(round(height * scale)))


def _center_crop(frames: np.ndarray, side: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    top, left = (h - side) // 2, (w - side) // 2
    return frames[:, top : top + side, left : left + side]


def sample_frames(row: Row, positions: tuple[float, ...], storage_options: dict | None = None) -> Row:
    """Attach ``_frames``: the raw bytes of (len(positions), 224, 224, 3) uint8 RGB frames.

    Bytes rather than an array keep one column type for kept rows and rejected ones (``b""``),
    which Ray Data needs to batch them together.
    """
    if is_rejected(row):
        row[FRAMES] = b""
        return row
    import decord

    started = time.perf_counter()
    width, height = _decode_size(row["width"], row["height"], FRAME_SIZE)
    indices = frame_indices(row["start_frame"], row["num_frames"], positions)
    try:
        with open_source(row["source_uri"], storage_options) as source:
            reader = decord.VideoReader(source, width=width, height=height, num_threads=1)
            frames = reader.get_batch(indices).asnumpy()
        row[FRAMES] = np.ascontiguousarray(_center_crop(frames, FRAME_SIZE)).tobytes()
    except Exception as exc:  # noqa: BLE001 - one bad clip must not stop a run over millions
        row[FRAMES] = b""
        reject(row, "scoring", "frame_read_error", f"frames {indices}: {first_line(exc)}")
    return add_seconds(row, "frames", time.perf_counter() - started)


def frames_from_bytes(data: bytes, count: int) -> np.ndarray:
    """Invert ``sample_frames``: bytes → (count, 224, 224, 3) uint8."""
    return np.frombuffer(data, dtype=np.uint8).reshape(count, FRAME_SIZE, FRAME_SIZE, 3)
