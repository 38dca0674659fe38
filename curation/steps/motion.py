"""Motion score of each clip, to find static clips (slideshows, title cards, still shots).

The score is NeMo Curator's "global mean" motion: the mean displacement of the frame's pixels
between a frame and its reference, in pixels, divided by the frame's width plus height, averaged
over frames sampled at about 2 fps. Dividing by width plus height makes the score independent of
the resolution: a pan across a tenth of the frame per frame scores the same at 480p and at 4K.
NeMo Curator filters clips under 0.00098 as static (``global_mean_threshold``, its
``MotionFilterStage`` default); that is this step's suggested ``min_motion``. Nothing is filtered
unless ``min_motion`` or ``max_motion`` is set.

Two ways to measure, recorded in ``motion_method``:

* ``motion_vectors``: the codec's own motion vectors, exported by FFmpeg as side data
  (``+export_mvs``). They come with decoding, and scene detection decodes every frame already, so
  it hands each decoded frame to a :class:`MotionVectorMeter` and this step only averages the
  values over the clip's range. Each block counts by its area; intra-coded blocks, which carry no
  vector, count as still, as in NeMo Curator's flow field. Only P-frames are read: FFmpeg exports
  a B-frame's direct-mode blocks as zero vectors, which would read as a still image. A P-frame's
  vectors span the frames back to its reference, the previous I- or P-frame (two or three frames
  back in a stream with B-frames), so they are divided by that distance: the score is motion per
  frame whatever the encoder's GOP structure.
* ``optical_flow``: Farneback optical flow (OpenCV) between a sampled frame and the next one,
  at :attr:`~curation.config.MotionConfig.flow_width` pixels wide, for codecs that carry no motion
  vectors (intra-only ProRes, MJPEG, all-I-frame files) and for clips whose range held none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from av.video.frame import PictureType

from curation.config import MotionConfig
from curation.rows import MOTION, Row
from curation.steps.base import Reject, StepContext
from lavie.core.errors import message_line
from lavie.core.video import VideoReadError

MOTION_VECTORS = "motion_vectors"
OPTICAL_FLOW = "optical_flow"


def sample_stride(fps: float, sample_fps: float) -> int:
    """Every how many frames one is sampled, for about ``sample_fps`` samples a second."""
    return max(1, round(fps / sample_fps)) if fps > 0 else 1


def vector_motion(vectors: np.ndarray, width: int, height: int) -> float:
    """The motion of one frame from its motion vectors (FFmpeg's ``AVMotionVector`` records):
    the mean pixel displacement over the frame, divided by width plus height.

    A bi-predicted block has one vector per reference; its displacement is their mean."""
    if len(vectors) == 0:
        return 0.0
    scale = vectors["motion_scale"].astype(np.float64)
    scale[scale == 0] = 1.0
    displacement = np.hypot(vectors["motion_x"] / scale, vectors["motion_y"] / scale)
    blocks = np.stack([vectors["dst_x"], vectors["dst_y"], vectors["w"], vectors["h"]], axis=1).astype(np.int64)
    unique, inverse, counts = np.unique(blocks, axis=0, return_inverse=True, return_counts=True)
    mean_displacement = np.bincount(inverse.ravel(), weights=displacement) / counts
    area = unique[:, 2] * unique[:, 3]
    return float((area * mean_displacement).sum() / (width * height) / (width + height))


@dataclass
class MotionVectorMeter:
    """Reads the motion vectors of the frames a decoder produces, every ``stride``-th frame.

    Scene detection calls :meth:`observe` with every frame it decodes, in presentation order
    (decoders asked to export vectors by :func:`request_motion_vectors`). A sampled frame that is
    not a P-frame with vectors (an I-frame, which GOP lengths often put exactly on the sampling
    grid, or a B-frame) is replaced by the next P-frame, so a stream with P-frames always yields
    samples.
    """

    stride: int
    values: dict[int, float] = field(default_factory=dict)  # frame index → motion per frame
    _index: int = 0
    _anchor: int | None = None  # the index of the last I- or P-frame: a P-frame's reference
    _wanted: bool = False

    def observe(self, frame: Any) -> None:
        if self._index % self.stride == 0:
            self._wanted = True
        kind = frame.pict_type
        if kind == PictureType.P and self._wanted and self._anchor is not None:
            vectors = frame.side_data.get("MOTION_VECTORS")
            if vectors is not None:
                distance = self._index - self._anchor
                self.values[self._index] = vector_motion(vectors.to_ndarray(), frame.width, frame.height) / distance
                self._wanted = False
        if kind in (PictureType.I, PictureType.P):
            self._anchor = self._index
        self._index += 1

    def to_row(self) -> dict[str, Any]:
        """What a video row carries for its clips' motion step (:data:`curation.rows.MOTION`)."""
        return {"stride": self.stride, "values": self.values}


def request_motion_vectors(codec_context: Any) -> bool:
    """Ask a PyAV decoder (before its first frame) to export motion vectors; False for codecs
    that never have any (intra-only ones)."""
    from av.codec.context import Flags2

    if codec_context.codec.intra_only:
        return False
    codec_context.flags2 |= Flags2.export_mvs
    return True


def flow_motion(frames: np.ndarray) -> float:
    """Mean Farneback flow magnitude between consecutive pairs of ``frames`` (``(2n, H, W, 3)``
    RGB: first, next, first, next, ...), divided by width plus height."""
    height, width = frames.shape[1:3]
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    magnitudes = []
    for before, after in zip(gray[0::2], gray[1::2]):
        flow = cv2.calcOpticalFlowFarneback(before, after, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        magnitudes.append(float(np.hypot(flow[..., 0], flow[..., 1]).mean()))
    return float(np.mean(magnitudes)) / (width + height)


def _flow_size(width: int, height: int, flow_width: int) -> tuple[int, int]:
    """(height, width) of the frames flow is computed on: ``flow_width`` wide (never upscaled)."""
    scale = min(1.0, flow_width / width)
    return max(2, int(round(height * scale / 2)) * 2), max(2, int(round(width * scale / 2)) * 2)


def _clip_flow_motion(row: Row, config: MotionConfig, context: StepContext) -> float | None:
    """The flow motion of the clip's sampled frames; None for a one-frame clip."""
    start, end = row["start_frame"], row["end_frame"]
    if end - start < 2:
        return None
    stride = sample_stride(row["fps"] or 0.0, config.sample_fps)
    firsts = list(range(start, end - 1, stride))
    indices = [index for first in firsts for index in (first, first + 1)]
    size = _flow_size(row["width"], row["height"], config.flow_width)
    try:
        frames = context.source(row["source_uri"]).reader(size).read(indices)
    except VideoReadError as exc:
        raise Reject("frame_read_error", f"frames {indices[0]}..{indices[-1]}: {message_line(exc)}") from None
    return flow_motion(frames)


def _clip_vector_motion(row: Row, measured: dict[str, Any] | None) -> float | None:
    """The mean of the vector motion sampled in the clip's range; None when none was."""
    if not measured:
        return None
    values = [v for i, v in measured["values"].items() if row["start_frame"] <= i < row["end_frame"]]
    return float(np.mean(values)) if values else None


def score_motion(row: Row, config: MotionConfig, context: StepContext) -> None:
    """Set ``motion_score`` and ``motion_method``; reject a clip outside the configured range."""
    measured = row.pop(MOTION, None)
    score = _clip_vector_motion(row, measured) if config.method == "auto" else None
    if score is not None:
        row["motion_method"] = MOTION_VECTORS
    else:
        score = _clip_flow_motion(row, config, context)
        row["motion_method"] = OPTICAL_FLOW
    row["motion_score"] = score
    if score is None:  # one frame: nothing moves
        row["motion_method"] = None
        if config.min_motion is not None:
            raise Reject("static", "one frame")
        return
    if config.min_motion is not None and score < config.min_motion:
        raise Reject("static", f"motion {score:.6f} < {config.min_motion} ({row['motion_method']})")
    if config.max_motion is not None and score > config.max_motion:
        raise Reject("too_much_motion", f"motion {score:.6f} > {config.max_motion} ({row['motion_method']})")
