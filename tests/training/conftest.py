"""Fixtures of the trainer tests: a tiny random SD folder, generated clips and images with their
manifests and a config builder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from train_configs import FPS, FRAMES, H, W, base_config

from lavie.synthetic import (
    clip_row,
    image_row,
    write_clip_manifest,
    write_image,
    write_image_manifest,
    write_pattern_video,
    write_tiny_sd,
)


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two clip sources of 4 clips each, one image source of 6 images, a tiny SD folder."""
    root = tmp_path_factory.mktemp("train-data")
    videos = [write_pattern_video(root / "media" / f"v{i}.mp4", FRAMES, H, W, fps=FPS, pattern="texture") for i in range(4)]
    webvid = [clip_row(str(v), 0, FRAMES, FPS, W, H, f"webvid clip {i} a red car on the road") for i, v in enumerate(videos)]
    vimeo = [clip_row(str(v), 2, FRAMES, FPS, W, H, f"vimeo clip {i} a wave over the sea") for i, v in enumerate(videos)]
    images = [
        image_row(str(write_image(root / "media" / f"i{i}.png", H, W, level=30 + 35 * i)), f"image {i} of a cat", W, H)
        for i in range(6)
    ]
    return {
        "root": root,
        "sd": write_tiny_sd(root / "tiny-sd"),
        "webvid": write_clip_manifest(root / "webvid", webvid),
        "vimeo": write_clip_manifest(root / "vimeo", vimeo),
        "laion": write_image_manifest(root / "laion", images),
    }


@pytest.fixture(scope="session")
def config_factory(train_data: dict[str, Path]) -> Callable[..., dict[str, Any]]:
    """``factory(name, storage, **sections)``: :func:`base_config` for module-scoped fixtures."""

    def make(name: str, storage: Path, **sections: Any) -> dict[str, Any]:
        return base_config(train_data, storage, name, **sections)

    return make


@pytest.fixture
def make_config(train_data: dict[str, Path], tmp_path: Path) -> Callable[..., dict[str, Any]]:
    def make(name: str = "run", storage: Path | None = None, **sections: Any) -> dict[str, Any]:
        return base_config(train_data, storage or tmp_path / "runs", name, **sections)

    return make


# --------------------------------------------------------------------------- the other kinds
@pytest.fixture(scope="session")
def cascade_data(train_data: dict[str, Path]) -> dict[str, Path]:
    """``train_data`` plus a base model folder (the tiny SD UNet inflated, as a base export holds)
    and a tiny x4-upscaler folder: the starting models of the interpolation, long-video, LoRA and
    VSR kinds."""
    from cascade.models import BaseUNet3DModel
    from lavie.synthetic import write_tiny_upscaler

    root = train_data["root"]
    base = root / "base-unet"
    if not base.exists():
        torch.manual_seed(0)
        BaseUNet3DModel.from_pretrained_2d(train_data["sd"]).save_pretrained(base)
    return {**train_data, "base": base, "upscaler": write_tiny_upscaler(root / "tiny-upscaler")}
