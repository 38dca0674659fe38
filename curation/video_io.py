"""Opening videos wherever they live: local paths directly, anything else through fsspec.

PyAV does the container and codec work (it decodes from Python file objects, so object-storage
inputs stream without a local copy); frames come out already scaled by libswscale, which is much
cheaper than decoding at full size and resizing afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import av
import fsspec
import numpy as np
from fsspec.core import split_protocol


def is_local(uri: str) -> bool:
    protocol, _ = split_protocol(uri)
    return protocol in (None, "file", "local")


@contextmanager
def open_container(uri: str, storage_options: dict | None = None) -> Iterator[av.container.InputContainer]:
    """Open ``uri`` with PyAV; raises ``av.error.FFmpegError``/``OSError`` for unreadable input."""
    if is_local(uri):
        container = av.open(split_protocol(uri)[1])
        try:
            yield container
        finally:
            container.close()
        return
    with fsspec.open(uri, "rb", **(storage_options or {})) as f:
        container = av.open(f)
        try:
            yield container
        finally:
            container.close()


def scaled_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """(w, h) with width ``target_width`` (never upscaled), aspect kept, both even."""
    if width <= target_width:
        return width - width % 2, height - height % 2
    scale = target_width / width
    return target_width - target_width % 2, max(2, int(round(height * scale / 2)) * 2)


def iter_frames(
    container: av.container.InputContainer, width: int, height: int, pix_fmt: str = "bgr24"
) -> Iterator[np.ndarray]:
    """Decode every frame of the first video stream, scaled to (width, height) as HxWx3 arrays."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for frame in container.decode(stream):
        yield frame.to_ndarray(width=width, height=height, format=pix_fmt)


def read_frames_at(
    container: av.container.InputContainer, indices: list[int], width: int, height: int
) -> dict[int, np.ndarray]:
    """RGB frames at the given frame indices (decoding sequentially from the nearest keyframe)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    wanted = sorted(set(indices))
    out: dict[int, np.ndarray] = {}
    for index, frame in enumerate(container.decode(stream)):
        if index == wanted[len(out)]:
            out[index] = frame.to_ndarray(width=width, height=height, format="rgb24")
            if len(out) == len(wanted):
                break
    return out
