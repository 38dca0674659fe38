"""Fixtures of the trainer tests: a tiny random SD folder, generated clips and images with their
manifests and a config builder."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from lavie.synthetic import (
    clip_row,
    image_row,
    write_clip_manifest,
    write_image,
    write_image_manifest,
    write_pattern_video,
    write_tiny_sd,
)

H, W, FRAMES, FPS = 48, 64, 16, 24


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread in this process, as in each single-CPU Ray worker: no oversubscription
    of a 2-core machine, and in-process numbers computed like the workers' ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def base_config(paths: dict[str, Path], storage: Path, name: str = "run", **sections: Any) -> dict[str, Any]:
    """A 2-worker tiny run: 4 frames + 1 image at 32x32 px, curriculum webvid → vimeo over 12 steps."""
    config: dict[str, Any] = {
        "model": {"pretrained": str(paths["sd"])},
        "data": {
            "seed": 3,
            "num_frames": 4,
            "frame_stride": 2,
            "height": 32,
            "width": 32,
            "images_per_sample": 1,
            "caption_dropout": 0.1,
            "shuffle_rows": 8,
            "sources": [
                {"name": "webvid", "kind": "video", "manifest": str(paths["webvid"]), "schedule": [[0, 1.0], [12, 0.0]]},
                {"name": "vimeo", "kind": "video", "manifest": str(paths["vimeo"]), "schedule": [[0, 0.0], [12, 1.0]]},
                {"name": "laion", "kind": "image", "manifest": str(paths["laion"]), "schedule": [[0, 1.0]]},
            ],
        },
        "optimizer": {"lr": 2e-3, "weight_decay": 0.0},
        "lr_schedule": {"kind": "constant", "warmup_steps": 1},
        "deepspeed": {"zero_stage": 2, "bf16": False, "grad_clip": 1.0},
        "ema": {"enabled": True, "decay": 0.8},
        "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1}},
        "run": {
            "name": name,
            "storage_path": str(storage),
            "max_steps": 12,
            "checkpoint_every": 4,
            "log_every": 1,
            "seed": 7,
            "max_failures": 1,
        },
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return copy.deepcopy(config)


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
