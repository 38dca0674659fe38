"""Generated H.264 videos with known scene cuts, for the demo, the tests and the benchmarks.

Each scene has its own colour palette and a moving pattern, so that PySceneDetect sees motion inside
a scene (no cut) and a large content change between scenes (a cut exactly at the scene boundary).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class SyntheticVideo:
    """What a generated video holds: its size and the frame where each scene starts."""

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


def _scene_frame(seed: int, index: int, width: int, height: int) -> np.ndarray:
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


def write_video(
    path: str | Path,
    scene_lengths: tuple[int, ...],
    width: int = 1280,
    height: int = 720,
    fps: int = 24,
    seed: int = 0,
    faststart: bool = False,
    preset: str = "ultrafast",
) -> SyntheticVideo:
    """Write an H.264 mp4 whose scenes have exactly ``scene_lengths`` frames.

    ``faststart`` puts the index before the frames, as streaming sites do; such a file cut short
    still opens and declares all its frames, which is what a truncated download looks like.
    ``preset`` is x264's: "ultrafast" (quick to write, no deblocking, no B-frames) for tests,
    "veryfast" or slower for files that decode like real web video.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": preset, "crf": "23"}
        for scene, length in enumerate(scene_lengths):
            for i in range(length):
                image = _scene_frame(seed * 1000 + scene, i, width, height)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return SyntheticVideo(path, width, height, fps, tuple(scene_lengths))
