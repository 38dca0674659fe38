"""The ``frames`` need: the frames a model step looks at, by default 10 %, 50 % and 90 % into each
clip, as a 224×224 centre crop after a shortest-side resize (CLIP's input).

They are read with the training stream's reader (the video's, shared by its clips:
:meth:`~curation.steps.base.StepContext.source`; upright, by decode-order index; decord seeks straight to the wanted frames and scales them in the decoder),
so a clip costs a few frame decodes, not a pass over its whole range. The executor stores them in
the row as bytes (one column type for kept rows and rejected ones, ``b""``, which Ray Data needs
to batch them).
"""

from __future__ import annotations

import numpy as np

from curation.rows import Row
from curation.steps.base import Reject, StepContext
from lavie.core.errors import message_line
from lavie.core.video import VideoReadError

FRAME_SIZE = 224


def frame_indices(start_frame: int, num_frames: int, positions: tuple[float, ...]) -> list[int]:
    return [start_frame + int(round(p * (num_frames - 1))) for p in positions]


def _decode_size(width: int, height: int, side: int) -> tuple[int, int]:
    scale = side / min(width, height)
    return max(side, int(round(width * scale))), max(side, int(round(height * scale)))


def _center_crop(frames: np.ndarray, side: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    top, left = (h - side) // 2, (w - side) // 2
    return frames[:, top : top + side, left : left + side]


def sample_frames(row: Row, context: StepContext) -> bytes:
    """The raw bytes of the clip's ``(len(positions), 224, 224, 3)`` uint8 RGB frames."""
    width, height = _decode_size(row["width"], row["height"], FRAME_SIZE)
    indices = frame_indices(row["start_frame"], row["num_frames"], context.frame_positions)
    try:
        frames = context.source(row["source_uri"]).reader((height, width)).read(indices)
    except VideoReadError as exc:
        raise Reject("frame_read_error", f"frames {indices}: {message_line(exc)}") from None
    return np.ascontiguousarray(_center_crop(frames, FRAME_SIZE)).tobytes()


def frames_from_bytes(data: bytes, count: int) -> np.ndarray:
    """Invert :func:`sample_frames`: bytes → ``(count, 224, 224, 3)`` uint8."""
    return np.frombuffer(data, dtype=np.uint8).reshape(count, FRAME_SIZE, FRAME_SIZE, 3)
