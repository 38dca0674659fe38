"""A tiny, randomly initialised open_clip model on disk: a model-config JSON plus safetensors.

Curation's scorer and evaluation's CLIPSIM load open_clip models from a config name or JSON and a
local checkpoint; this writes both at toy size (32×32 images, one layer per tower), so tests run the
real loading code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def tiny_clip_config(embed_dim: int) -> dict:
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }


def write_tiny_clip(folder: str | Path, embed_dim: int = 64, seed: int = 0) -> dict[str, str]:
    """``folder/tiny-clip.json`` and ``folder/clip.safetensors``; returns ``{"clip_model": config
    path, "clip_checkpoint": weights path}`` (what the scorer and CLIPSIM take)."""
    import open_clip
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "tiny-clip.json"
    config.write_text(json.dumps(tiny_clip_config(embed_dim)))
    open_clip.add_model_config(str(config))
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = open_clip.create_model("tiny-clip", pretrained=None, load_weights=False)
    finally:
        torch.random.set_rng_state(state)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "clip.safetensors"))
    return {"clip_model": str(config), "clip_checkpoint": str(folder / "clip.safetensors")}
