"""Long-video model (paper, section 5.6): the base model conditioned on a first frame's latent.

A long video is generated recursively: each new clip is conditioned on the last frame of the
previous one.
"""

from __future__ import annotations

import torch

from cascade.errors import InputShapeError
from cascade.models.conditioning import LatentConditionedUNet3DModel


class LongVideoUNet3DModel(LatentConditionedUNet3DModel):
    """Base architecture + zero-initialised input channels holding the first frame's latent on every
    frame (build them with :func:`build_first_frame_condition`, pass them as ``added_cond``)."""


def build_first_frame_condition(first_frame: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(B, C, H, W)`` latent of the conditioning frame -> ``(B, C, num_frames, H, W)``."""
    if first_frame.ndim != 4:
        raise InputShapeError(f"first_frame must be (B, C, H, W), got shape {tuple(first_frame.shape)}")
    return first_frame.unsqueeze(2).expand(-1, -1, num_frames, -1, -1)
