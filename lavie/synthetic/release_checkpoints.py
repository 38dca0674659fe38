"""Random checkpoints in the key layout of the published LaVie weights, for tests and benchmarks.

Written from the documented layout of ``lavie_base.pt``, ``lavie_interpolation.pt`` and
``lavie_vsr.pt`` (``{'ema': state_dict}``, fp32), not from any importer: the 2D keys are those of
the diffusers ``UNet2DConditionModel`` the stage was inflated from, and each stage adds:

* every transformer block ``…``: ``….attn_temp.{to_q,to_k,to_v}.weight``,
  ``….attn_temp.to_out.0.{weight,bias}``, ``….norm_temp.{weight,bias}``; base and VSR also
  ``….attn_temp.time_rel_pos_bias.relative_attention_bias.weight`` (32 buckets x heads) and
  ``….attn_temp.rotary_emb.freqs`` (``10000 ** (-2i / d)``, ``d = min(32, head_dim)``); VSR names the
  two modules ``attn_temporal`` and ``norm_temporal``;
* interpolation: ``conv_in.weight`` with 8 input channels;
* VSR: ``‹spatial transformer›.resblock_temporal.*`` (GroupNorm, Conv3d 3x1x1, GroupNorm,
  Conv3d 3x1x1), ``down_temporal_blocks.{i}.*``, ``mid_temporal_block.*``, ``up_temporal_blocks.{i}.*``
  (``resblocks_3d_t``: Conv3d 5x1x1 then 3x1x1 with a time-embedding projection;
  ``resblocks_3d_s``: a 3x3 resnet with one; ``shift_conv``: 1x1), and ``temporal_rotary_emb.freqs``.

Every weight is random (normal, ``std``), so that a key mapped to the wrong place shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.transformers.transformer_2d import Transformer2DModel

RELEASE_STAGES = ("base", "interpolation", "vsr")
BIAS_BUCKETS = 32
MAX_ROTARY_DIM = 32

Shapes = dict[str, tuple[int, ...]]


def release_state_dict(
    stage: str, unet_config: Mapping[str, Any], *, seed: int = 0, std: float = 0.2
) -> dict[str, torch.Tensor]:
    """A random state dict laid out as the release's ``stage`` checkpoint, for this 2D UNet config."""
    if stage not in RELEASE_STAGES:
        raise ValueError(f"stage must be one of {RELEASE_STAGES}, got {stage!r}")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(dict(unet_config))
    shapes: Shapes = {key: tuple(value.shape) for key, value in unet.state_dict().items()}
    if stage == "interpolation":
        out_channels, _, *kernel = shapes["conv_in.weight"]
        shapes["conv_in.weight"] = (out_channels, 2 * unet.config.out_channels, *kernel)
    rotary: dict[str, int] = {}  # key -> rotated dims, for the frequency buffers
    attention, norm = ("attn_temporal", "norm_temporal") if stage == "vsr" else ("attn_temp", "norm_temp")
    for path, block in _modules(unet, BasicTransformerBlock):
        heads, inner = block.attn1.heads, block.attn1.inner_dim
        prefix = f"{path}.{attention}"
        shapes.update({f"{prefix}.{proj}.weight": (inner, block.dim) for proj in ("to_q", "to_k", "to_v")})
        if block.attn1.to_q.bias is not None:
            shapes.update({f"{prefix}.{proj}.bias": (inner,) for proj in ("to_q", "to_k", "to_v")})
        shapes.update({f"{prefix}.to_out.0.weight": (block.dim, inner), f"{prefix}.to_out.0.bias": (block.dim,)})
        shapes.update({f"{path}.{norm}.weight": (block.dim,), f"{path}.{norm}.bias": (block.dim,)})
        if stage != "interpolation":
            shapes[f"{prefix}.time_rel_pos_bias.relative_attention_bias.weight"] = (BIAS_BUCKETS, heads)
            rotary[f"{prefix}.rotary_emb.freqs"] = min(MAX_ROTARY_DIM, inner // heads)
    if stage == "vsr":
        shapes.update(_vsr_temporal_convs(unet))
        rotary["temporal_rotary_emb.freqs"] = MAX_ROTARY_DIM
    generator = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shape, generator=generator) * std for key, shape in shapes.items()}
    frequencies = {dim: _rotary_frequencies(dim) for dim in set(rotary.values())}
    state.update({key: frequencies[dim] for key, dim in rotary.items()})  # one shared tensor, as one module
    return state


def write_release_checkpoint(
    path: str | os.PathLike, stage: str, unet_config: Mapping[str, Any], *, seed: int = 0, std: float = 0.2
) -> None:
    """``torch.save({'ema': state_dict}, path)``, as the release's checkpoints are written."""
    torch.save({"ema": release_state_dict(stage, unet_config, seed=seed, std=std)}, path)


def _modules(unet: torch.nn.Module, kind: type) -> Iterator[tuple[str, Any]]:
    return ((path, module) for path, module in unet.named_modules() if isinstance(module, kind))


def _rotary_frequencies(dim: int) -> torch.Tensor:
    return 1.0 / 10000.0 ** (torch.arange(0, dim, 2).float() / dim)


def _vsr_temporal_convs(unet: UNet2DConditionModel) -> Shapes:
    shapes: Shapes = {}
    for path, transformer in _modules(unet, Transformer2DModel):
        shapes.update(_temporal_resnet(f"{path}.resblock_temporal", transformer.in_channels, kernel=3))
    temb = unet.time_embedding.linear_2.out_features
    channels = list(unet.config.block_out_channels)
    modules = {f"down_temporal_blocks.{i}": width for i, width in enumerate(channels)}
    modules["mid_temporal_block"] = channels[-1]
    modules.update({f"up_temporal_blocks.{i}": width for i, width in enumerate(reversed(channels))})
    for prefix, width in modules.items():
        shapes.update(_temporal_resnet(f"{prefix}.resblocks_3d_t", width, kernel=5, temb=temb))
        shapes.update(_conv_pair(f"{prefix}.resblocks_3d_s", width, (3, 3), temb=temb))
        shapes.update({f"{prefix}.shift_conv.weight": (width, width, 1, 1), f"{prefix}.shift_conv.bias": (width,)})
    return shapes


def _temporal_resnet(prefix: str, width: int, kernel: int, temb: int | None = None) -> Shapes:
    shapes = _conv_pair(prefix, width, (3, 1, 1), temb=temb)
    shapes[f"{prefix}.conv1.weight"] = (width, width, kernel, 1, 1)
    return shapes


def _conv_pair(prefix: str, width: int, kernel: tuple[int, ...], temb: int | None) -> Shapes:
    """norm1, conv1, [time_emb_proj], norm2, conv2 of a resnet keeping ``width`` channels."""
    shapes: Shapes = {}
    for index in (1, 2):
        shapes[f"{prefix}.norm{index}.weight"] = shapes[f"{prefix}.norm{index}.bias"] = (width,)
        shapes[f"{prefix}.conv{index}.weight"] = (width, width, *kernel)
        shapes[f"{prefix}.conv{index}.bias"] = (width,)
    if temb is not None:
        shapes[f"{prefix}.time_emb_proj.weight"] = (width, temb)
        shapes[f"{prefix}.time_emb_proj.bias"] = (width,)
    return shapes
