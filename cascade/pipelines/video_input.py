"""Videos handed to the interpolation and VSR stages: a file, or frames already in memory."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cascade.errors import CascadeError, InputShapeError
from lavie.core.video import VideoReadError, open_video

VideoInput = Any  # str | os.PathLike | np.ndarray | torch.Tensor


def load_video(video: VideoInput, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``(B, 3, F, H, W)`` float32 pixels in [-1, 1] from:

    * a video file (every frame, upright, through :func:`lavie.core.video.open_video`);
    * a numpy array ``(F, H, W, 3)`` or ``(B, F, H, W, 3)``: uint8, or float in [0, 1] (a
      pipeline's ``np`` output);
    * a tensor ``(B, F, 3, H, W)`` in [0, 1] (a pipeline's ``pt`` output).

    ``size`` (height, width) resizes (bilinear, antialiased) when it differs from the video's.
    """
    if isinstance(video, (str, os.PathLike)):
        pixels = _read_file(str(video))
    elif isinstance(video, np.ndarray):
        pixels = _from_numpy(video)
    elif isinstance(video, torch.Tensor):
        if video.ndim != 5 or video.shape[2] != 3:
            raise InputShapeError(f"video tensor must be (B, F, 3, H, W) in [0, 1], got shape {tuple(video.shape)}")
        pixels = video.float().permute(0, 2, 1, 3, 4) * 2.0 - 1.0
    else:
        raise CascadeError(f"video must be a file path, a numpy array or a tensor, got {type(video).__name__}")
    if size is not None and tuple(pixels.shape[-2:]) != tuple(size):
        b, c, f = pixels.shape[:3]
        frames = F.interpolate(pixels.transpose(1, 2).flatten(0, 1), size=size, mode="bilinear", antialias=True)
        pixels = frames.unflatten(0, (b, f)).transpose(1, 2).clamp(-1.0, 1.0)
    return pixels.contiguous()


def _read_file(path: str) -> torch.Tensor:
    try:
        with open_video(path) as reader:
            frames = reader.read(range(len(reader)))
    except VideoReadError as exc:
        raise CascadeError(f"cannot read input video {exc}") from None
    if len(frames) == 0:
        raise CascadeError(f"input video {path}: has no frames")
    return _from_numpy(frames)


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    if array.ndim == 4:
        array = array[None]
    if array.ndim != 5 or array.shape[-1] != 3:
        raise InputShapeError(f"video array must be (F, H, W, 3) or (B, F, H, W, 3), got shape {array.shape}")
    pixels = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 4, 1, 2, 3)
    if pixels.dtype == torch.uint8:
        return pixels.float() / 127.5 - 1.0
    return pixels.float() * 2.0 - 1.0
