"""What a pipeline returns: frames in the layout diffusers' video pipelines use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from cascade.errors import CascadeError

OutputType = Literal["np", "pt", "pil", "latent"]
OUTPUT_TYPES = ("np", "pt", "pil", "latent")


@dataclass
class VideoPipelineOutput:
    """``frames``: ``np`` float32 ``(B, F, H, W, 3)`` in [0, 1]; ``pt`` ``(B, F, 3, H, W)`` in [0, 1];
    ``pil`` a list (per video) of lists of images; ``latent`` the scaled latents ``(B, C, F, h, w)``.
    ``latents`` always holds the final latents (what a later stage may take instead of pixels);
    ``seconds`` the wall time of each stage that ran."""

    frames: Any
    latents: torch.Tensor | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise CascadeError(f"output_type {output_type!r} is not one of {', '.join(OUTPUT_TYPES)}")


def format_frames(pixels: torch.Tensor, output_type: OutputType) -> Any:
    """Pixels ``(B, 3, F, H, W)`` in [-1, 1] in the requested output type."""
    unit = ((pixels.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 1, 3, 4).cpu()  # (B, F, 3, H, W)
    if output_type == "pt":
        return unit
    array = unit.permute(0, 1, 3, 4, 2).numpy()
    if output_type == "np":
        return array
    from PIL import Image

    return [[Image.fromarray(frame) for frame in to_uint8(video)] for video in array]


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """[0, 1] float frames → uint8, rounding to nearest."""
    return (np.asarray(frames) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
