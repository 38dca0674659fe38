"""Weights and video sets for the evaluation tests, built once per session and saved to disk so
the real loading code runs: a random I3D in the published key layout (and as TorchScript), a tiny
open_clip model through a model-config JSON, and small H.264 videos in UCF-101's naming."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from random_weights import random_i3d

from lavie.core.video import write_video
from lavie.synthetic.tiny_clip import write_tiny_clip

# Small videos: I3D sees every one at 224×224 whatever their size; 24 frames cover the 16 it reads.
HEIGHT, WIDTH, FRAMES = 40, 64, 24
CLASSES = ("ApplyEyeMakeup", "YoYo")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs torch on one thread (tiny models gain nothing from threads)."""


@pytest.fixture(scope="session")
def i3d_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``state_dict``: the layout of i3d_pretrained_400.pt (no num_batches_tracked, as published);
    ``torchscript``: the same network through ``torch.jit.script``."""
    root = tmp_path_factory.mktemp("i3d")
    model = random_i3d()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, root / "i3d_pretrained_400.pt")
    torch.jit.save(torch.jit.script(model), str(root / "i3d_torchscript.pt"))
    return {"state_dict": root / "i3d_pretrained_400.pt", "torchscript": root / "i3d_torchscript.pt"}


@pytest.fixture(scope="session")
def clip_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def moving_frames(seed: int, frames: int = FRAMES, height: int = HEIGHT, width: int = WIDTH) -> Iterator[np.ndarray]:
    """A smooth random pattern sliding one pixel per frame: videos that differ per seed."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 8 + 2, (width + frames) // 8 + 2, 3)).astype(np.float32)
    big = np.kron(base, np.ones((8, 8, 1), np.float32))
    for t in range(frames):
        yield np.clip(big[:height, t : t + width] + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class VideoSets:
    real: Path  # UCF-101 layout: <Class>/v_<Class>_gNN_cNN.mp4, 3 videos per class
    fake: Path  # a flat folder of 4 videos
    short: Path  # a folder with one video of 12 frames among 16-frame ones
    root: Path


@pytest.fixture(scope="session")
def video_sets(tmp_path_factory: pytest.TempPathFactory) -> VideoSets:
    root = tmp_path_factory.mktemp("videos")
    for c, name in enumerate(CLASSES):
        for g in range(3):
            write_video(root / "real" / name / f"v_{name}_g{g + 1:02d}_c01.mp4", moving_frames(10 * c + g), 8, preset="ultrafast")
    for k in range(4):
        write_video(root / "fake" / f"sample{k}.mp4", moving_frames(100 + k), 8, preset="ultrafast")
    write_video(root / "short" / "ok_a.mp4", moving_frames(200, frames=16), 8, preset="ultrafast")
    write_video(root / "short" / "ok_b.mp4", moving_frames(201, frames=16), 8, preset="ultrafast")
    write_video(root / "short" / "short.mp4", moving_frames(202, frames=12), 8, preset="ultrafast")
    return VideoSets(root / "real", root / "fake", root / "short", root)


@pytest.fixture(scope="session")
def sized_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real set of 3 videos at 48×64 (4:3, as UCF-101's 240×320) and a fake set of 4 at 40×64
    (5:8, as 320×512): each set's crop (largest square; 270/320 of the short side) cuts something."""
    root = tmp_path_factory.mktemp("sized")
    for k in range(3):
        write_video(root / "real" / f"real{k}.mp4", moving_frames(300 + k, frames=18, height=48), 8, preset="ultrafast")
    for k in range(4):
        write_video(root / "fake" / f"fake{k}.mp4", moving_frames(400 + k, frames=16, height=40), 8, preset="ultrafast")
    return {"real": root / "real", "fake": root / "fake"}
