"""Running a network over windows of a latent video (frame chunks, spatial tiles) and blending.

The VSR stage cannot hold 61 frames at 1280×2048 in one UNet call; the release cuts the video into
8-frame chunks. Here a :class:`WindowPlan` cuts any of the frame, height and width axes into
windows of a given size and overlap. At every denoising step the network runs on each window and
the windows' predictions are blended back into one (MultiDiffusion's rule): in an overlap, each
window's weight ramps linearly towards its edge, and the weights are normalised to sum to one.
The scheduler then takes one step on the whole latent, so windows never drift apart.

One window covering an axis has weight one everywhere: the result is then exactly the unwindowed
call. Without overlap, windows are disjoint and every position takes its own window's value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cascade.errors import CascadeError


def spans(length: int, size: int | None, overlap: int = 0) -> list[tuple[int, int]]:
    """``[start, stop)`` windows of ``size`` covering ``range(length)``, consecutive ones sharing
    ``overlap`` positions; the last is aligned to the end (so it may overlap its neighbour more).
    ``size=None`` or ``size >= length``: one window."""
    if size is None or size >= length:
        return [(0, length)]
    if size < 1 or not 0 <= overlap < size:
        raise CascadeError(f"window size {size} with overlap {overlap}: need size >= 1 and 0 <= overlap < size")
    starts = list(range(0, length - size, size - overlap)) + [length - size]
    return [(start, start + size) for start in starts]


def ramp_weights(windows: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Per window, 1-D blend weights: 1 inside, a linear ramp ``1/(k+1) .. k/(k+1)`` over the ``k``
    positions it shares with each neighbour, so that weights sum to one where two windows meet."""
    weights = []
    for index, (start, stop) in enumerate(windows):
        weight = torch.ones(stop - start)
        if index > 0:
            shared = max(0, windows[index - 1][1] - start)
            weight[:shared] = torch.arange(1, shared + 1) / (shared + 1)
        if index + 1 < len(windows):
            shared = max(0, stop - windows[index + 1][0])
            if shared:
                weight[stop - start - shared :] = torch.minimum(
                    weight[stop - start - shared :], torch.arange(shared, 0, -1) / (shared + 1)
                )
        weights.append(weight)
    return weights


@dataclass(frozen=True)
class Window:
    """A window's slices of a ``(B, C, F, H, W)`` tensor and its ``(F, H, W)`` blend weight."""

    frames: slice
    rows: slice
    cols: slice
    weight: torch.Tensor

    def of(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor[:, :, self.frames, self.rows, self.cols]


@dataclass(frozen=True)
class WindowPlan:
    """Window sizes and overlaps per axis (``None``: the axis is not cut). Spatial sizes are in
    latent pixels."""

    frames: int | None = None
    frame_overlap: int = 0
    tile: int | None = None
    tile_overlap: int = 0

    def windows(self, num_frames: int, height: int, width: int) -> list[Window]:
        axes = [
            spans(num_frames, self.frames, self.frame_overlap),
            spans(height, self.tile, self.tile_overlap),
            spans(width, self.tile, self.tile_overlap),
        ]
        weights = [ramp_weights(axis) for axis in axes]
        out = []
        for (f0, f1), wf in zip(axes[0], weights[0]):
            for (h0, h1), wh in zip(axes[1], weights[1]):
                for (w0, w1), ww in zip(axes[2], weights[2]):
                    weight = wf[:, None, None] * wh[None, :, None] * ww[None, None, :]
                    out.append(Window(slice(f0, f1), slice(h0, h1), slice(w0, w1), weight))
        return out


def blend_windows(
    run: Callable[[Window], torch.Tensor], windows: list[Window], shape: torch.Size, device: torch.device
) -> torch.Tensor:
    """``run`` on every window, blended into one float32 tensor of ``shape`` (B, C, F, H, W)."""
    if len(windows) == 1:
        return run(windows[0]).float()
    total = torch.zeros(shape, device=device, dtype=torch.float32)
    norm = torch.zeros(shape[2:], device=device, dtype=torch.float32)
    for window in windows:
        weight = window.weight.to(device)
        total[:, :, window.frames, window.rows, window.cols] += run(window).float() * weight
        norm[window.frames, window.rows, window.cols] += weight
    return total / norm
