"""Shapes and config builders of the training tests (a module of their own, imported by the
conftest and the tests, so that no test imports a conftest by name)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

#: The generated clips: H×W pixels, FRAMES frames at FPS.
H, W, FRAMES, FPS = 48, 64, 16, 24


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


def kind_config(kind: str, paths: dict[str, Path], storage: Path, name: str = "run", **sections: Any) -> dict[str, Any]:
    """A 2-worker tiny run of ``kind`` over the ``cascade_data`` folders (see :func:`base_config`)."""
    config = base_config(paths, storage, name)
    data, model = config["data"], {"kind": kind, "pretrained": str(paths["sd"]), "unet": str(paths["base"])}
    webvid, vimeo, laion = data["sources"]
    data.update(images_per_sample=0, sources=[webvid, vimeo])
    if kind == "interpolation":
        model["options"] = {"patch_size": [16, 16]}
        data.pop("frame_stride")
        data.update(num_frames=9, target_fps=FPS)
    elif kind == "vsr":
        model = {"kind": kind, "pretrained": str(paths["upscaler"]), "options": {"patch_size": [16, 16]}}
        data.update(sources=[webvid, laion], image_clips={"max_shift": 4}, min_image_side=H)
    elif kind == "lora":
        model["options"] = {"rank": 4}
        config["data"] = {key: data[key] for key in ("seed", "height", "width", "caption_dropout", "shuffle_rows")}
        config["data"]["sources"] = [laion]
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    config["model"] = {**model, **sections.get("model", {})}
    return copy.deepcopy(config)
