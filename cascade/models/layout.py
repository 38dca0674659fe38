"""How the frames of a joint image-video batch are laid out inside the 3D UNet.

Spatial layers see a batch of ``B * F`` independent frames (frame ``f`` of sample ``b`` at row
``b * F + f``). Of the ``F`` frames of a sample, the first ``F - M`` form the video and the last
``M`` are independent images (paper, section 4.1: 16 video frames + 4 images). Temporal layers only
ever see the video frames; the image frames pass them untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from cascade.errors import InputShapeError


class FrameLayout(NamedTuple):
    """Frame counts of one forward call; plain ints, so ``torch.compile`` specialises on them."""

    num_frames: int
    num_image_frames: int = 0

    @property
    def num_video_frames(self) -> int:
        return self.num_frames - self.num_image_frames

    def validate(self) -> FrameLayout:
        if self.num_frames < 1:
            raise InputShapeError(f"sample has {self.num_frames} frames; at least one is needed")
        if not 0 <= self.num_image_frames <= self.num_frames:
            raise InputShapeError(
                f"num_image_frames={self.num_image_frames} must lie in [0, {self.num_frames}] "
                f"(the sample has {self.num_frames} frames)"
            )
        return self

    def map_video(self, frames: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Apply ``fn`` to the video frames of a ``(B * F, ...)`` tensor; image frames pass through.

        ``fn`` receives and returns a ``(B, T, ...)`` tensor, ``T`` the number of video frames.
        """
        if self.num_video_frames == 0:
            return frames
        per_sample = frames.unflatten(0, (-1, self.num_frames))
        video = fn(per_sample[:, : self.num_video_frames])
        if self.num_image_frames:
            video = torch.cat([video, per_sample[:, self.num_video_frames :]], dim=1)
        return video.flatten(0, 1)

    def sparse_causal_sources(self) -> tuple[list[int], list[int]]:
        """For each frame, the frames its sparse-causal self-attention takes keys and values from:
        video frame ``f`` from frame 0 and frame ``max(f - 1, 0)``; an image frame from itself, twice
        (a key set repeated leaves softmax attention unchanged, and keeps one shape for all)."""
        frames = range(self.num_frames)
        video = self.num_video_frames
        first = [0 if f < video else f for f in frames]
        previous = [max(f - 1, 0) if f < video else f for f in frames]
        return first, previous


def frames_to_batch(sample: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, H, W)`` -> ``(B * F, C, H, W)``, frame-major within each sample."""
    return sample.transpose(1, 2).flatten(0, 1)


def batch_to_frames(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(B * F, C, H, W)`` -> ``(B, C, F, H, W)``; the inverse of :func:`frames_to_batch`."""
    return frames.unflatten(0, (-1, num_frames)).transpose(1, 2)
