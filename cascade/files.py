"""Writing generated frames as files a person can look at: H.264 mp4 (PyAV) and PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cascade.pipelines.output import to_uint8
from lavie.core.video import write_video


def write_mp4(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """``(F, H, W, 3)`` frames in [0, 1] → an H.264 mp4 (yuv420p, faststart: plays in browsers).
    Odd sizes are padded by one edge pixel, which yuv420p needs."""
    pixels = to_uint8(frames)
    pad_h, pad_w = pixels.shape[1] % 2, pixels.shape[2] % 2
    if pad_h or pad_w:
        pixels = np.pad(pixels, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return write_video(path, pixels, fps, crf=18, faststart=True)


def write_pngs(frames: np.ndarray, folder: str | Path, stem: str = "frame") -> list[Path]:
    """One PNG per frame, ``folder/<stem>_00000.png`` ... (a single frame: ``folder/<stem>.png``)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(frames)
    names = [f"{stem}.png"] if len(pixels) == 1 else [f"{stem}_{i:05d}.png" for i in range(len(pixels))]
    paths = [folder / name for name in names]
    for frame, path in zip(pixels, paths):
        Image.fromarray(frame).save(path)
    return paths
