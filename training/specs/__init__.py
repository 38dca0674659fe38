"""The trainable networks: one model spec per ``model.kind`` (torchtitan's train specs).

A spec (:class:`training.specs.spec.ModelSpec`) says how its network is built or inflated, what
it trains by default, what a batch holds and how it becomes a loss, and how the result exports.
The trainer, the checkpoints and the launcher are the same for every kind.

Adding a trainable network: write its spec module and add one entry here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lavie.core.errors import UserError

if TYPE_CHECKING:
    from training.specs.spec import ModelSpec

#: ``model.kind`` → where its spec class is (imported only when used, like the curation steps).
SPECS: dict[str, str] = {
    "base": "training.specs.base_model:BaseModelSpec",
    "interpolation": "training.specs.interpolation:InterpolationModelSpec",
    "vsr": "training.specs.vsr:VSRModelSpec",
    "long_video": "training.specs.long_video:LongVideoModelSpec",
    "lora": "training.specs.lora:LoRAModelSpec",
}


def spec_class(kind: str) -> type[ModelSpec]:
    if kind not in SPECS:
        raise UserError(f"model.kind: '{kind}' is not a trainable network (one of: {', '.join(SPECS)})")
    module, _, name = SPECS[kind].partition(":")
    return getattr(importlib.import_module(module), name)
