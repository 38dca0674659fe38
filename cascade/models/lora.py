"""Personalisation with LoRA on the spatial attention layers (paper, section 5.6), through peft.

Adapters go on the query/key/value/output projections of the spatial self- and cross-attention
(``attn1``, ``attn2``); the temporal attention (``attn_temp``) is never targeted. Enabling,
disabling and unloading are diffusers' peft integration on the model (``unload_lora()`` restores
the original modules, base weights untouched).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from peft import LoraConfig
from safetensors import safe_open
from torch import nn

from cascade.errors import ModelLoadError
from cascade.models.blocks import is_temporal_key
from cascade.models.exports import model_folder
from cascade.models.unet_3d import BaseUNet3DModel

#: peft ``target_modules`` regex (full match on module names) of the spatial attention projections.
SPATIAL_LORA_TARGETS = r".*\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"
#: File name of saved adapters (diffusers' name, so the files also load with diffusers pipelines).
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def spatial_lora_config(rank: int = 4, alpha: float | None = None) -> LoraConfig:
    """A LoRA config on the spatial attention projections; ``alpha`` defaults to ``rank`` (scale 1)."""
    return LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha, target_modules=SPATIAL_LORA_TARGETS)


def add_spatial_lora(
    model: BaseUNet3DModel, rank: int = 4, alpha: float | None = None, adapter_name: str = "default"
) -> None:
    """Add a fresh adapter (no effect yet: its up-projection starts at zero) and freeze every other
    parameter, so that only the adapter trains."""
    model.requires_grad_(False)
    model.add_adapter(spatial_lora_config(rank, alpha), adapter_name=adapter_name)


def lora_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The LoRA parameters of a model (what the personalisation optimiser updates)."""
    return (param for name, param in model.named_parameters() if ".lora_" in name)


def save_spatial_lora(model: BaseUNet3DModel, directory: str | Path, adapter_name: str = "default") -> Path:
    """Write one adapter (weights + its LoRA config as metadata) to ``directory``; returns the file."""
    model.save_lora_adapter(directory, adapter_name=adapter_name, weight_name=LORA_WEIGHT_NAME)
    return Path(directory) / LORA_WEIGHT_NAME


def load_spatial_lora(model: BaseUNet3DModel, path: str | Path, adapter_name: str = "default") -> None:
    """Load an adapter written by :func:`save_spatial_lora` (a folder, the file itself, or a LoRA
    run's `lavie train` export)."""
    path = model_folder(path)
    weights = path / LORA_WEIGHT_NAME if path.is_dir() else path
    if not weights.is_file():
        raise ModelLoadError(f"{weights}: no such LoRA weights file")
    with safe_open(weights, framework="pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    temporal = [key for key in shapes if is_temporal_key(key)]
    if temporal:
        raise ModelLoadError(f"{weights}: adapts temporal layer {temporal[0]}; only spatial LoRA is supported")
    mismatch = _architecture_mismatch(model, shapes)
    if mismatch:
        raise ModelLoadError(f"{weights}: adapter was made for another architecture ({mismatch})")
    model.load_lora_adapter(str(weights.parent), weight_name=weights.name, prefix=None, adapter_name=adapter_name)


def _architecture_mismatch(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why the adapter's ``<module>.lora_A/B.weight`` shapes do not fit ``model``'s linear layers,
    or ``None`` when every adapted layer exists with matching sizes."""
    modules = dict(model.named_modules())
    for key, shape in shapes.items():
        name, _, part = key.rpartition(".lora_")
        layer = modules.get(name)
        if not isinstance(layer, nn.Linear):
            return f"the model has no linear layer {name}"
        expected = (layer.out_features if part.startswith("B") else layer.in_features)
        given = shape[0] if part.startswith("B") else shape[-1]
        if given != expected:
            return f"{key} fits a layer of width {given}, {name} has {expected}"
    return None
