"""Full-size configs (random init from the published configs, no weights): parameter counts."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

from cascade.models import SD1_UNET_CONFIG, X4_UPSCALER_UNET_CONFIG, BaseUNet3DModel, VSRUNet3DModel


def _count(model: torch.nn.Module) -> int:
    return sum(param.numel() for param in model.parameters())


def _temporal_attention_count(config: dict) -> int:
    """Temporal attention per transformer block of width C (heads x head_dim = C, q/k/v without bias):
    LayerNorm 2C + q, k, v 3C^2 + output projection C^2 + C."""
    channels = config["block_out_channels"]
    levels = len(channels)
    widths = [c for i, c in enumerate(channels) if config["down_block_types"][i].startswith("CrossAttn")]
    widths = widths * config["layers_per_block"] + [channels[-1]]  # down blocks + mid block
    for i, block in enumerate(config["up_block_types"]):
        if block.startswith("CrossAttn"):
            widths += [channels[levels - 1 - i]] * (config["layers_per_block"] + 1)
    return sum(4 * c * c + 3 * c for c in widths)


def _build(cls: type, config: dict) -> torch.nn.Module:
    with torch.device("meta"):  # shapes only: nothing allocated, nothing initialised
        return cls.from_config(config)


def test_sd1_base_is_the_2d_unet_plus_temporal_attention():
    count_2d = _count(_build(UNet2DConditionModel, SD1_UNET_CONFIG))
    model = _build(BaseUNet3DModel, SD1_UNET_CONFIG)
    temporal = sum(p.numel() for p in model.temporal_parameters())
    assert count_2d == 859_520_964  # the published SD 1.x UNet size
    assert temporal == _temporal_attention_count(SD1_UNET_CONFIG) == 49_599_040
    assert _count(model) == count_2d + temporal


def test_x4_vsr_is_the_upscaler_plus_temporal_layers():
    count_2d = _count(_build(UNet2DConditionModel, X4_UPSCALER_UNET_CONFIG))
    model = _build(VSRUNet3DModel, X4_UPSCALER_UNET_CONFIG)
    attention = sum(p.numel() for n, p in model.named_parameters() if ".attn_temp." in n or ".norm_temp." in n)
    convs = sum(p.numel() for n, p in model.named_parameters() if ".temp_convs." in n)
    assert attention == _temporal_attention_count(X4_UPSCALER_UNET_CONFIG)
    trainable = sum(p.numel() for p in model.trainable_parameters())
    assert _count(model) == count_2d + attention + convs == count_2d + trainable
