"""Tiny random 2D UNets (SD 1.x-shaped and x4-upscaler-shaped), saved as diffusers folders so the
real loading code runs; and helpers to compare the 3D models with them frame by frame."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import UNet2DConditionModel

# Two resolution levels, attention in one of them, 2 heads of width 8 / 16, 3 frames at 8x8.
TINY_SD_CONFIG: dict[str, Any] = {
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "cross_attention_dim": 12,
    "attention_head_dim": 2,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "sample_size": 8,
}

# x4-upscaler shape: 7 input channels, noise-level class embedding, cross-attention-only blocks
# first, linear projections, attention in the lower level.
TINY_X4_CONFIG: dict[str, Any] = {
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "cross_attention_dim": 12,
    "attention_head_dim": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "only_cross_attention": [True, False],
    "use_linear_projection": True,
    "num_class_embeds": 10,
    "in_channels": 7,
    "out_channels": 4,
    "sample_size": 8,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs torch on one thread (tiny models gain nothing from threads)."""


def random_unet_2d(config: dict[str, Any], seed: int = 0) -> UNet2DConditionModel:
    """A 2D UNet with every parameter random (so that zero-initialised layers of diffusers do not
    hide mistakes in the weight mapping)."""
    torch.manual_seed(seed)
    model = UNet2DConditionModel(**config)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.2)
    return model.eval()


@pytest.fixture(scope="session")
def sd_2d() -> UNet2DConditionModel:
    return random_unet_2d(TINY_SD_CONFIG)


@pytest.fixture(scope="session")
def sd_folder(sd_2d: UNet2DConditionModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sd") / "unet"
    sd_2d.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def x4_2d() -> UNet2DConditionModel:
    return random_unet_2d(TINY_X4_CONFIG, seed=1)


@pytest.fixture(scope="session")
def x4_folder(x4_2d: UNet2DConditionModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("x4") / "unet"
    x4_2d.save_pretrained(folder)
    return folder


def _run_2d_per_frame(
    unet: UNet2DConditionModel,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    context: torch.Tensor,
    **kwargs: torch.Tensor,
) -> torch.Tensor:
    """Reference: the 2D UNet on every frame of ``(B, C, F, H, W)`` as an independent image.

    ``context`` is ``(B, L, D)`` or per frame ``(B, F, L, D)``; ``kwargs`` are per-sample ``(B,)``
    tensors (class labels), repeated per frame like ``timestep``.
    """
    batch, _, frames = sample.shape[:3]
    context = context.flatten(0, 1) if context.ndim == 4 else context.repeat_interleave(frames, dim=0)
    out = unet(
        sample.transpose(1, 2).flatten(0, 1),
        timestep.repeat_interleave(frames),
        context,
        **{key: value.repeat_interleave(frames) for key, value in kwargs.items()},
    ).sample
    return out.unflatten(0, (batch, frames)).transpose(1, 2)


def _randomize_temporal(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every temporal parameter random values, as if trained (the output projections start at zero)."""
    from cascade.models.blocks import is_temporal_key

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_temporal_key(name):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


@pytest.fixture
def make_inputs() -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    def make(
        batch: int = 2, frames: int = 3, channels: int = 4, size: int = 8, per_frame_context: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(1234)
        sample = torch.randn(batch, channels, frames, size, size, generator=generator)
        timestep = torch.tensor([17, 503][:batch] + [900] * max(0, batch - 2))
        shape = (batch, frames, 5, 12) if per_frame_context else (batch, 5, 12)
        context = torch.randn(*shape, generator=generator)
        return sample, timestep, context

    return make


@pytest.fixture
def per_frame_reference() -> Callable[..., torch.Tensor]:
    return _run_2d_per_frame


@pytest.fixture
def randomize_temporal() -> Callable[..., None]:
    return _randomize_temporal
