"""Writing video files: the one mp4 writer of the platform (PyAV, H.264 by default)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    codec: str = "libx264",
    crf: int = 23,
    preset: str = "medium",
    gop: int | None = None,
    pix_fmt: str = "yuv420p",
    faststart: bool = False,
    options: Mapping[str, str] | None = None,
) -> Path:
    """Encode RGB uint8 frames ``(H, W, 3)`` at ``fps`` into ``path`` (its folder is created).

    ``crf``/``preset``/``gop`` are x264's (other codecs take ``options``). ``faststart`` puts the
    index before the frames, as streaming sites do (and browsers prefer).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    container_options = {"movflags": "faststart"} if faststart else {}
    stream = None
    with av.open(str(path), mode="w", options=container_options) as container:
        for array in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = array.shape[:2]
                stream.pix_fmt = pix_fmt
                codec_options = {"crf": str(crf), "preset": preset} if codec == "libx264" else {}
                if gop is not None:
                    codec_options["g"] = str(gop)
                stream.options = {**codec_options, **dict(options or {})}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    return path
