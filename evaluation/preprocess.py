"""Frames into network inputs: the FVD crop-and-resize rule, frame choice, and CLIP's transform.

FVD (every choice is recorded in a result through :func:`fvd_rule`):

* **Frames**: the first ``num_frames`` (16) consecutive frames of each video (or of each clip of a
  manifest), at the video's own rate: I3D sees the same motion span as a generated 16-frame
  video. A shorter video is an error, never padded.
* **Space**: a centred square crop whose side is ``crop_fraction`` × the frame's short side, then a
  bilinear resize to 224×224 (``torch.nn.functional.interpolate``, ``align_corners=False``, no
  antialiasing: the resize of the TATS and StyleGAN-V FVD code). Generated 320×512 frames use
  270/320 (the LaVie paper: a 270×270 centre crop, resized to 224); real videos use 1 (the largest
  centred square, so a 320×240 UCF-101 frame loses 40 columns on each side, then 240 → 224).
  Crop first, then resize, for both sets: the two sets pass through the same resampling.
* **Values**: RGB scaled to [-1, 1] (x / 127.5 − 1), as the I3D of the FVD code expects; to
  [0, 1] (x / 255) for VideoMAE-v2, as cd-fvd feeds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: The LaVie paper's crop of generated 320×512 frames: 270×270, i.e. 270/320 of the short side.
GENERATED_CROP = 270 / 320
RESIZE_FILTER = "bilinear (torch.nn.functional.interpolate, align_corners=False, antialias=False)"


def first_frames(start: int, end: int, count: int) -> list[int] | None:
    """The ``count`` consecutive frame indices from ``start``, or None when ``[start, end)`` holds fewer."""
    return list(range(start, start + count)) if end - start >= count else None


def evenly_spaced(start: int, end: int, count: int | None) -> list[int]:
    """Every frame of ``[start, end)``, or ``count`` of them evenly spaced (first and last included)."""
    if count is None or end - start <= count:
        return list(range(start, end))
    return sorted({int(round(i)) for i in np.linspace(start, end - 1, count)})


def centre_square(height: int, width: int, fraction: float) -> tuple[int, int, int]:
    """(top, left, side) of the centred square crop whose side is ``fraction`` × the short side."""
    side = max(1, int(round(min(height, width) * fraction)))
    return (height - side) // 2, (width - side) // 2, side


def crop_resize(frames: np.ndarray | torch.Tensor, fraction: float, size: int) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` frames → float ``(T, 3, size, size)`` in [0, 255]: the centre square
    crop, then the bilinear resize (skipped when the crop already has the size)."""
    x = torch.as_tensor(frames)
    top, left, side = centre_square(x.shape[1], x.shape[2], fraction)
    x = x[:, top : top + side, left : left + side].permute(0, 3, 1, 2).float()
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return x


def i3d_input(frames: np.ndarray | torch.Tensor, fraction: float, size: int = 224) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` frames → I3D's ``(3, T, size, size)`` float input in [-1, 1]."""
    return (crop_resize(frames, fraction, size) / 127.5 - 1.0).clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()


def videomae_input(frames: np.ndarray | torch.Tensor, fraction: float, size: int = 224) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` frames → VideoMAE-v2's ``(3, T, size, size)`` float input in [0, 1]
    (cd-fvd's: x / 255, no mean/std normalisation), after the same crop and resize as I3D's."""
    return (crop_resize(frames, fraction, size) / 255.0).clamp(0.0, 1.0).permute(1, 0, 2, 3).contiguous()


def fvd_rule(fraction: float, size: int) -> str:
    """The spatial rule in words, for results and reports."""
    return f"centre square crop of {fraction:.6g} x the short side, then resize to {size}x{size}: {RESIZE_FILTER}"


def clip_pixels(frames: Sequence[np.ndarray], transform: object) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` frames through open_clip's own eval transform (PIL: resize the short
    side, bicubic; centre crop; normalise), stacked ``(T, 3, S, S)``."""
    from PIL import Image

    return torch.stack([transform(Image.fromarray(np.ascontiguousarray(frame))) for frame in frames])
