"""Which weights a `lavie train` export folder stands for.

An export is ``export_info.json`` beside ``raw/`` (the trained weights) and ``ema/`` (their EMA).
Everything that takes a model path (the trainer's ``model.unet``, ``lavie cascade assemble``,
LoRA loading) accepts an export as well and uses what :func:`model_folder` picks.
"""

from __future__ import annotations

import json
from pathlib import Path

EXPORT_INFO = "export_info.json"


def model_folder(path: str | Path) -> Path:
    """The folder a path names: itself, or for an export its ``ema/`` weights when the run kept an
    EMA (``"ema": true`` in ``export_info.json``), else ``raw/``."""
    path = Path(path)
    info_file = path / EXPORT_INFO
    if not info_file.is_file():
        return path
    try:
        kept_ema = bool(json.loads(info_file.read_text()).get("ema"))
    except (OSError, json.JSONDecodeError, AttributeError):
        kept_ema = False
    return path / "ema" if kept_ema and (path / "ema").is_dir() else path / "raw"
