"""Pixel-space preparation of a batch for the models that train on patches (interpolation, VSR).

* :func:`crop_patches`: one random ``size`` window per sample, the same for all its frames and
  images (the model learns from a patch of the frame; it runs on whole frames at inference);
* :func:`downsample_x4`: the VSR model's low-resolution input, the exact 4x4 box average of the
  high-resolution patch, as RGB in [-1, 1].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

#: The VSR model upscales by this factor per side.
VSR_SCALE = 4


def crop_patches(batch: dict[str, Any], size: tuple[int, int], generator: torch.Generator) -> dict[str, Any]:
    """The batch with ``video`` (B, T, 3, H, W) and ``images`` (B, M, 3, H, W) cut to one
    ``size = (h, w)`` window per sample, its corner uniform over the frame (``generator``);
    the corners are kept as ``patch_corners`` (B, 2) (top, left)."""
    video, images = batch["video"], batch["images"]
    height, width = video.shape[-2:]
    h, w = size
    if h > height or w > width:
        raise ValueError(f"patch {h}x{w} is larger than the {height}x{width} frames")
    b = video.shape[0]
    top = torch.randint(0, height - h + 1, (b,), generator=generator)
    left = torch.randint(0, width - w + 1, (b,), generator=generator)

    def cut(frames: torch.Tensor) -> torch.Tensor:
        return torch.stack([
            frames[j, ..., int(top[j]) : int(top[j]) + h, int(left[j]) : int(left[j]) + w] for j in range(b)
        ]).contiguous()  # fmt: skip

    return {**batch, "video": cut(video), "images": cut(images), "patch_corners": torch.stack([top, left], dim=1)}


def downsample_x4(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` (H, W multiples of 4) → float ``(..., 3, H/4, W/4)`` in [-1, 1],
    each pixel the mean of a 4x4 block."""
    pooled = F.avg_pool2d(frames.reshape(-1, *frames.shape[-3:]).float(), VSR_SCALE) / 127.5 - 1.0
    return pooled.reshape(*frames.shape[:-2], *pooled.shape[-2:])
