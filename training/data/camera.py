"""Images as clips: a still image filmed by a simulated hand-held camera (paper, section 4.3).

The VSR model learns temporal consistency from videos and, to use high-resolution images as
well, from clips made of one image seen through a moving crop window. The motion model:

* the camera offset ``p_t`` (pixels, per axis, integer) starts at 0 and moves with a velocity
  ``v_t`` that is an AR(1) process, ``v_t = smoothness * v_{t-1} + jitter * n_t`` with
  ``n_t ~ N(0, 1)``: slow drift plus tremor, without the jumps of independent offsets;
* the offset is clipped to ``[-max_shift, max_shift]``, where the velocity is reset to 0 (the
  operator re-centres), so every frame stays inside the image;
* frame ``t`` is the ``H x W`` window of the image (loaded to cover ``(H + 2 max_shift) x
  (W + 2 max_shift)``) whose top-left corner is ``(max_shift + p_t_y, max_shift + p_t_x)``.

Shifts are whole pixels, so frames are exact copies of image pixels (no resampling blur), and the
path is a pure function of its generator: the same seed gives the same clip.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from lavie.core.config import StrictModel


class CameraMotion(StrictModel):
    """``data.image_clips``: the hand-held camera that turns an image into a clip."""

    # Largest offset from the centred window, in output pixels.
    max_shift: int = Field(16, ge=0)
    # Velocity memory in [0, 1): 0 is white jitter, close to 1 a slow drift.
    smoothness: float = Field(0.8, ge=0.0, lt=1.0)
    # Standard deviation of the velocity's per-frame change, in pixels.
    jitter: float = Field(1.5, ge=0.0)


def camera_path(motion: CameraMotion, num_frames: int, generator: np.random.Generator) -> np.ndarray:
    """Integer offsets ``(num_frames, 2)`` (dy, dx), each within ``[-max_shift, max_shift]``."""
    noise = generator.standard_normal((num_frames, 2)) * motion.jitter
    offsets = np.zeros((num_frames, 2))
    position, velocity = np.zeros(2), np.zeros(2)
    for t in range(1, num_frames):
        velocity = motion.smoothness * velocity + noise[t]
        position = position + velocity
        outside = np.abs(position) > motion.max_shift
        position = np.clip(position, -motion.max_shift, motion.max_shift)
        velocity[outside] = 0.0
        offsets[t] = position
    return np.clip(np.rint(offsets), -motion.max_shift, motion.max_shift).astype(np.int64)


def image_clip(image: torch.Tensor, offsets: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Frames ``(T, 3, height, width)`` of ``image`` ``(3, height + 2m, width + 2m)`` seen through
    the window displaced by each of ``offsets`` (from :func:`camera_path`, ``m`` its bound)."""
    margin_y = (image.shape[-2] - height) // 2
    margin_x = (image.shape[-1] - width) // 2
    frames = [
        image[:, margin_y + dy : margin_y + dy + height, margin_x + dx : margin_x + dx + width]
        for dy, dx in offsets.tolist()
    ]
    return torch.stack(frames).contiguous()
