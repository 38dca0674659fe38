"""Model weights from local files: tensors only, never arbitrary unpickled objects; one-line errors.

A weights file is ``.safetensors`` or a torch file read with ``weights_only=True``. The jobs that
score or measure with pretrained networks (curation's CLIP and aesthetic scorers, evaluation's
I3D and CLIPSIM) all load through here, so a damaged or foreign file reads the same everywhere.

An open_clip architecture is an open_clip model name (``ViT-B-32``) or the path of an open_clip
model-config JSON (registered under its file stem), which is how tests build tiny CLIPs through
the same code path as the real ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from lavie.core.errors import UserError, message_line


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path; a one-line error when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    return path


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes: which weights a result was measured with."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: str | Path, what: str = "weights file") -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or torch file (a ``state_dict``/``model`` entry is
    unwrapped, a ``module.`` prefix dropped)."""
    path = require_file(path, what)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # the loaders raise many types for a damaged or foreign file
        raise UserError(f"{path}: cannot read weights: {message_line(exc)[:200]}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: not a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def open_clip_architecture(clip_model: str) -> str:
    """The open_clip model name of ``clip_model`` (a name, or a config JSON registered under its stem)."""
    import open_clip

    if clip_model.endswith(".json"):
        require_file(clip_model, "open_clip model config")
        open_clip.add_model_config(clip_model)
        return Path(clip_model).stem
    if clip_model not in open_clip.list_models():
        raise UserError(f"unknown open_clip model '{clip_model}' (give a model name or a config .json path)")
    return clip_model


def load_open_clip(clip_model: str, checkpoint: str | Path) -> tuple[Any, str]:
    """(model in eval mode, architecture name) of an open_clip architecture with local weights.

    Every weight must fit: a missing or unexpected key is a one-line error naming the file (the
    text tower's ``attn_mask`` buffer is rebuilt by open_clip and may be absent).
    """
    import open_clip

    name = open_clip_architecture(clip_model)
    model = open_clip.create_model(name, pretrained=None, load_weights=False)
    missing, unexpected = model.load_state_dict(load_state_dict(checkpoint, "CLIP checkpoint"), strict=False)
    missing = [k for k in missing if not k.endswith("attn_mask")]
    if missing or unexpected:
        kind, key = ("missing", missing[0]) if missing else ("unexpected", unexpected[0])
        raise UserError(f"{checkpoint}: does not fit open_clip '{name}': {kind} key '{key}'")
    return model.eval(), name
