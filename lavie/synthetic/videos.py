"""Generated H.264 videos whose content is known frame by frame.

* Scene videos (:func:`write_scene_video`): scenes of known lengths, each with its own colour
  palette and a moving pattern, so PySceneDetect sees motion inside a scene (no cut) and a large
  content change between scenes (a cut exactly at the scene boundary).
* Pattern videos (:func:`write_pattern_video`): ``pattern="index"`` frames are flat grey at
  :func:`index_level` of the frame index (a decoded frame tells which source frame it was, within
  H.264's error) with a red band on the left and right edges and a blue band on the top and bottom
  (a test can tell what a crop removed); ``pattern="texture"`` frames are a moving, smoothly
  textured scene that costs a decoder roughly what natural footage does.
* Pan videos (:func:`write_pan_video`): a window moving across a still, random texture at a known
  speed, in pixels per frame (0: a still image), for the motion step.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lavie.core.video import write_video

RED = (255, 0, 0)
BLUE = (0, 0, 255)
_LEVEL_BASE, _LEVEL_STEP = 10, 6


# --------------------------------------------------------------------------- scene videos
@dataclass(frozen=True)
class SyntheticVideo:
    """What a generated scene video holds: its size and the frame where each scene starts."""

    path: Path
    width: int
    height: int
    fps: int
    scene_lengths: tuple[int, ...]

    @property
    def num_frames(self) -> int:
        return sum(self.scene_lengths)

    @property
    def cut_frames(self) -> list[int]:
        """Frame numbers where a new scene begins (the first scene's start excluded)."""
        return list(np.cumsum(self.scene_lengths)[:-1].astype(int))

    @property
    def scenes(self) -> list[tuple[int, int]]:
        """(start_frame, end_frame exclusive) of every scene."""
        ends = np.cumsum(self.scene_lengths).astype(int)
        return [(int(e - n), int(e)) for e, n in zip(ends, self.scene_lengths)]


def scene_frame(seed: int, index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of scene ``seed``: a two-colour gradient plus a square moving across it."""
    rng = np.random.default_rng(seed)
    hue = (seed * 0.2917 + (seed % 1000) * 0.618) % 1.0  # golden-ratio spacing between scenes
    bright = 0.95 if seed % 2 == 0 else 0.45  # alternate brightness between consecutive scenes
    c1 = np.array(colorsys.hsv_to_rgb(hue, 0.85, bright)) * 255
    c2 = np.array(colorsys.hsv_to_rgb((hue + 0.35) % 1.0, 0.3, 1.3 - bright)) * 255
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    frame = (c1 * (1 - ramp) + c2 * ramp).astype(np.uint8)
    frame = np.repeat(frame, height, axis=0)
    side = max(4, height // 5)
    x = int((index * width / 60 + rng.integers(0, width)) % max(1, width - side))
    y = int(height // 2 - side // 2 + (height // 6) * np.sin(index / 6.0))
    frame[y : y + side, x : x + side] = 255 - c1.astype(np.uint8)
    return frame


def scene_frames(scene_lengths: tuple[int, ...], width: int, height: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Every frame of a scene video, in order: what :func:`write_scene_video` encodes."""
    for scene, length in enumerate(scene_lengths):
        for i in range(length):
            yield scene_frame(seed * 1000 + scene, i, width, height)


def write_scene_video(
    path: str | Path,
    scene_lengths: tuple[int, ...],
    width: int = 1280,
    height: int = 720,
    fps: int = 24,
    seed: int = 0,
    faststart: bool = False,
    preset: str = "ultrafast",
    **encoding: Any,
) -> SyntheticVideo:
    """Write a video whose scenes have exactly ``scene_lengths`` frames (H.264 mp4 by default).

    ``faststart`` puts the index before the frames, as streaming sites do; such a file cut short
    still opens and declares all its frames, which is what a truncated download looks like.
    ``preset`` is x264's: "ultrafast" (quick to write, no deblocking, no B-frames) for tests,
    "veryfast" or slower for files that decode like real web video. Other keywords go to
    :func:`lavie.core.video.write_video` (``codec``, ``pix_fmt``, ``options``, ``timestamps`` for
    a variable frame rate, ``rotation`` for a display rotation).
    """
    write_video(path, scene_frames(scene_lengths, width, height, seed), fps, crf=encoding.pop("crf", 23), preset=preset, faststart=faststart, **encoding)
    return SyntheticVideo(Path(path), width, height, fps, tuple(scene_lengths))


# --------------------------------------------------------------------------- pattern videos
def index_level(index: int) -> int:
    """Grey level that encodes a frame index (indices 0..40 fit in 8 bits)."""
    return _LEVEL_BASE + _LEVEL_STEP * index


def level_index(level: float) -> int:
    """Inverse of :func:`index_level`, tolerant of a few levels of coding error."""
    return round((level - _LEVEL_BASE) / _LEVEL_STEP)


def index_frame(index: int, height: int, width: int, border: int = 8) -> np.ndarray:
    """RGB frame of the ``index`` pattern, shape (height, width, 3)."""
    frame = np.full((height, width, 3), index_level(index), np.uint8)
    frame[:, :border] = RED
    frame[:, width - border :] = RED
    frame[:border, border : width - border] = BLUE
    frame[height - border :, border : width - border] = BLUE
    return frame


def texture_frame(index: int, height: int, width: int) -> np.ndarray:
    """RGB frame of a moving smooth texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = index / 8.0
    r = 128 + 100 * np.sin(x / 37.0 + t) * np.cos(y / 23.0 - 0.5 * t)
    g = 128 + 100 * np.sin((x + y) / 51.0 - t)
    b = 128 + 100 * np.cos(np.hypot(x - width / 2, y - height / 2) / 29.0 - 2 * t)
    rng = np.random.default_rng(index)
    noise = rng.normal(0, 6, (height // 8, width // 8, 1)).repeat(8, 0).repeat(8, 1)
    frame = np.stack([r, g, b], axis=-1) + noise[:height, :width]
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_pattern_video(
    path: str | Path,
    num_frames: int,
    height: int,
    width: int,
    fps: int = 24,
    pattern: Literal["index", "texture"] = "index",
    gop: int = 12,
    preset: str = "veryfast",
) -> Path:
    """Write an H.264 mp4 (yuv420p, keyframe every ``gop`` frames) of the ``pattern`` frames."""
    make = index_frame if pattern == "index" else texture_frame
    frames = (make(k, height, width) for k in range(num_frames))
    return write_video(path, frames, fps, crf=12 if pattern == "index" else 23, preset=preset, gop=gop)


# --------------------------------------------------------------------------- pan videos
def pan_frames(num_frames: int, height: int, width: int, speed: float, seed: int = 0) -> Iterator[np.ndarray]:
    """The frames of a horizontal pan at ``speed`` pixels per frame over a smooth random texture
    (smooth, so that neither a codec nor optical flow finds a periodic match)."""
    import cv2

    rng = np.random.default_rng(seed)
    span = width + int(np.ceil(speed * num_frames)) + 2
    coarse = rng.integers(0, 256, (height // 8 + 2, span // 8 + 2, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (span, height), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    for index in range(num_frames):
        offset = speed * index
        shift = np.float32([[1, 0, -(offset % 1.0)], [0, 1, 0]])  # the sub-pixel part of the offset
        window = texture[:, int(offset) : int(offset) + width + 1]
        yield cv2.warpAffine(window, shift, (width, height), flags=cv2.INTER_LINEAR)


def write_pan_video(
    path: str | Path, num_frames: int, height: int, width: int, speed: float, fps: int = 24, **encoding: Any
) -> Path:
    """Write a pan video (see :func:`pan_frames`); ``encoding`` goes to
    :func:`lavie.core.video.write_video` (``codec``, ``pix_fmt``, ``preset``, ``gop``)."""
    return write_video(path, pan_frames(num_frames, height, width, speed), fps, **encoding)
