"""Video and image decoding, resized (aspect preserved) to cover the output size, then centre-cropped.

Videos: :func:`lavie.core.video.open_video`, the reader curation checks every kept clip with:
frames by decode-order index, upright. Where decord opens the file (nearly always), its decoder
scales each frame straight to the smallest size that covers the crop (when the manifest gives the
displayed size) and fetches only the frames the sample uses, so full-resolution frames are never
materialised; PyAV decodes what decord cannot (AV1). Images: JPEGs are decoded at a reduced DCT
scale (``Image.draft``) when that still covers the crop, then resized with PIL.

Every failure to read or decode is raised as :class:`SkipSample`, which the dataset counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lavie.core.errors import message_line
from lavie.core.manifest import clip_id_for, image_id_for
from lavie.core.storage import open_input
from lavie.core.video import VideoReadError, open_video

if TYPE_CHECKING:
    from training.data.config import DataConfig

#: Why a row was replaced: unreadable; a clip shorter than the frame window; a clip whose frame
#: rate is below ``target_fps`` where frames must not repeat; an image under the minimum size.
SkipReason = Literal["undecodable", "too_short", "low_fps", "too_small"]
SKIP_REASONS: tuple[SkipReason, ...] = get_args(SkipReason)


class SkipSample(Exception):
    """A clip or image that cannot be used; the dataset replaces it and counts the reason."""

    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ClipSpec:
    """How clips are sampled and shaped; mirrors the relevant :class:`DataConfig` fields."""

    num_frames: int
    height: int
    width: int
    frame_stride: int | None = None
    target_fps: float | None = None
    decode_threads: int = 1
    storage_options: dict[str, Any] = field(default_factory=dict)
    # Sampled frames are distinct source frames: a clip slower than ``target_fps`` is skipped
    # (``low_fps``) instead of repeating frames (the interpolation model learns real motion).
    distinct_frames: bool = False

    @classmethod
    def from_data_config(cls, config: DataConfig, *, distinct_frames: bool = False) -> ClipSpec:
        return cls(
            distinct_frames=distinct_frames,
            num_frames=config.num_frames,
            height=config.height,
            width=config.width,
            frame_stride=config.frame_stride,
            target_fps=config.target_fps,
            decode_threads=config.decode_threads,
            storage_options=config.storage_options,
        )


def cover_size(src_height: int, src_width: int, height: int, width: int) -> tuple[int, int]:
    """Smallest aspect-preserving size of a ``src`` frame that covers ``height`` x ``width``."""
    scale = max(height / src_height, width / src_width)
    return max(height, round(src_height * scale)), max(width, round(src_width * scale))


def center_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre crop of the last two dimensions."""
    top = (frames.shape[-2] - height) // 2
    left = (frames.shape[-1] - width) // 2
    return frames[..., top : top + height, left : left + width]


def frame_step(spec: ClipSpec, fps: float | None) -> float:
    """Source frames between consecutive sampled frames."""
    if spec.frame_stride is not None:
        return float(spec.frame_stride)
    if not fps or fps <= 0:
        raise SkipSample("undecodable", "frame rate unknown, needed for target_fps")
    if spec.distinct_frames and fps < spec.target_fps:
        raise SkipSample("low_fps", f"clip at {fps:g} fps cannot give {spec.target_fps:g} fps without repeating frames")
    return fps / spec.target_fps


def clip_span(num_frames: int, step: float) -> int:
    """Source frames covered by ``num_frames`` samples ``step`` apart."""
    return math.floor((num_frames - 1) * step) + 1


def frame_indices(first: int, num_frames: int, step: float) -> list[int]:
    """Indices ``first + floor(k * step)`` for k < num_frames."""
    return [first + math.floor(k * step) for k in range(num_frames)]


def plan_frames(
    spec: ClipSpec, start: int, end: int, fps: float | None, offset_fraction: float
) -> list[int]:
    """Frames of the clip [start, end) to decode. The window's start is placed at
    ``offset_fraction`` (in [0, 1)) of the slack; a clip shorter than the window is skipped."""
    step = frame_step(spec, fps)
    span = clip_span(spec.num_frames, step)
    slack = end - start - span
    if slack < 0:
        raise SkipSample("too_short", f"clip [{start}, {end}) shorter than {span} frames")
    return frame_indices(start + math.floor(offset_fraction * (slack + 1)), spec.num_frames, step)


def load_clip(
    uri: str,
    start: int,
    end: int,
    fps: float | None,
    src_size: tuple[int | None, int | None],
    spec: ClipSpec,
    offset_fraction: float,
) -> tuple[torch.Tensor, list[int]]:
    """Decode ``spec.num_frames`` frames of the clip [start, end) of ``uri``.

    Returns uint8 frames (T, 3, H, W) and the source frame indices used.
    """
    if start < 0 or end <= start:
        raise SkipSample("undecodable", f"invalid frame range [{start}, {end})")
    fps = fps if fps is not None and math.isfinite(fps) and fps > 0 else None
    if fps or spec.frame_stride is not None:  # plan first: a too-short clip costs no I/O
        plan_frames(spec, start, end, fps, offset_fraction)
    src_height, src_width = src_size
    decode_size = (
        cover_size(src_height, src_width, spec.height, spec.width)
        if src_height and src_width
        else None
    )
    try:
        with open_video(uri, spec.storage_options, size=decode_size, threads=spec.decode_threads) as reader:
            if end > len(reader):
                raise SkipSample("undecodable", f"clip ends at frame {end}, file has {len(reader)}")
            indices = plan_frames(spec, start, end, fps or reader.fps, offset_fraction)
            frames = torch.from_numpy(reader.read(indices)).permute(0, 3, 1, 2)
    except VideoReadError as exc:
        raise SkipSample("undecodable", message_line(exc)) from None
    if decode_size is None or tuple(frames.shape[-2:]) != decode_size:
        frames = resize_frames(frames, *cover_size(*frames.shape[-2:], spec.height, spec.width))
    return center_crop(frames, spec.height, spec.width).contiguous(), indices


def load_clip_row(row: Mapping[str, Any], spec: ClipSpec, offset_fraction: float) -> tuple[torch.Tensor, list[int]]:
    """:func:`load_clip` for a clip-manifest row."""
    if row["source_uri"] is None or row["start_frame"] is None or row["end_frame"] is None:
        raise SkipSample("undecodable", "row lacks source_uri, start_frame or end_frame")
    return load_clip(
        row["source_uri"], row["start_frame"], row["end_frame"], row["fps"], (row["height"], row["width"]), spec,
        offset_fraction,
    )  # fmt: skip


def planned_row_frames(row: Mapping[str, Any], spec: ClipSpec, offset_fraction: float) -> list[int] | None:
    """The source frames :func:`load_clip_row` will decode, when the row alone tells (it does
    unless ``target_fps`` is set and the manifest lacks the frame rate); None otherwise."""
    if row["source_uri"] is None or row["start_frame"] is None or row["end_frame"] is None:
        return None
    fps = row["fps"] if row["fps"] is not None and math.isfinite(row["fps"]) and row["fps"] > 0 else None
    if fps is None and spec.frame_stride is None:
        return None
    return plan_frames(spec, row["start_frame"], row["end_frame"], fps, offset_fraction)


def row_clip_id(row: Mapping[str, Any]) -> str:
    return row.get("clip_id") or clip_id_for(row["source_uri"], row["start_frame"])


def row_image_id(row: Mapping[str, Any]) -> str:
    return row.get("image_id") or image_id_for(row["uri"])


def load_image(
    uri: str, height: int, width: int, storage_options: dict[str, Any] | None = None
) -> torch.Tensor:
    """Decode an image to uint8 (3, H, W), resized to cover and centre-cropped."""
    try:
        with open_input(uri, storage_options) as source:
            image = Image.open(source)
            image.draft("RGB", _wh(cover_size(image.height, image.width, height, width)))
            image = image.convert("RGB")
            size = cover_size(image.height, image.width, height, width)
            if size != (image.height, image.width):
                image = image.resize(_wh(size), Image.Resampling.BICUBIC)
            array = np.array(image)  # a writable copy, as torch requires
    except Exception as exc:  # PIL and fsspec raise many types; all mean "cannot use this image"
        raise SkipSample("undecodable", f"{uri}: {type(exc).__name__}: {message_line(exc)}") from None
    return center_crop(torch.from_numpy(array).permute(2, 0, 1), height, width).contiguous()


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 (N, 3, h, w) frames."""
    resized = F.interpolate(
        frames.float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def _wh(size: Sequence[int]) -> tuple[int, int]:
    """(height, width) -> PIL's (width, height)."""
    return int(size[1]), int(size[0])
