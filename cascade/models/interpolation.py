"""Temporal interpolation model (paper, section 4.2): 16 base frames -> 61 frames, all newly generated."""

from __future__ import annotations

import torch

from cascade.errors import InputShapeError
from cascade.models.conditioning import LatentConditionedUNet3DModel

#: Each gap between two base frames becomes 4 output frames; the last base frame closes the clip.
INTERPOLATION_FACTOR = 4


class InterpolationUNet3DModel(LatentConditionedUNet3DModel):
    """Base architecture + 4 zero-initialised input channels holding the base frames' VAE latents
    laid onto the output grid by :func:`build_interpolation_condition` (pass it as ``added_cond``)."""


def interpolation_source_frames(num_base_frames: int) -> torch.Tensor:
    """For each of the ``4 * (N - 1) + 1`` output frames, the base frame it is conditioned on.

    Release convention: position ``4k`` holds frame ``k``, ``4k + 1`` and ``4k + 2`` hold frame
    ``k``, ``4k + 3`` holds frame ``k + 1``; 16 base frames give 61 output frames.
    """
    positions = torch.arange(INTERPOLATION_FACTOR * (num_base_frames - 1) + 1)
    return positions // INTERPOLATION_FACTOR + (positions % INTERPOLATION_FACTOR == INTERPOLATION_FACTOR - 1).long()


def build_interpolation_condition(latents: torch.Tensor) -> torch.Tensor:
    """``(B, C, N, H, W)`` latents of the base video -> ``(B, C, 4(N-1)+1, H, W)`` conditioning."""
    if latents.ndim != 5 or latents.shape[2] < 2:
        raise InputShapeError(
            f"latents must be (B, C, N, H, W) with N >= 2 base frames, got shape {tuple(latents.shape)}"
        )
    index = interpolation_source_frames(latents.shape[2]).to(latents.device)
    return latents.index_select(2, index)
