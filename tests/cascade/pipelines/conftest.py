"""A tiny random cascade folder (all four models, SD and x4-upscaler parts) written to disk once
per session, so the real loading code of every pipeline runs; and settings small enough for CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cascade.models import BaseUNet3DModel, InterpolationUNet3DModel, LongVideoUNet3DModel, VSRUNet3DModel
from cascade.models.blocks import is_temporal_key
from cascade.pipelines import GenerationSettings, assemble_cascade
from lavie.synthetic import write_tiny_sd, write_tiny_upscaler

#: 4 key frames at 32×32 (8×8 latents), 2 steps per stage: a whole cascade in a few seconds.
TINY = dict(num_frames=4, height=32, width=32, base_steps=2, interpolation_steps=2, vsr_steps=2,
            vsr_chunk_frames=8, decode_chunk_size=8)  # fmt: skip


def tiny_settings(**overrides: object) -> GenerationSettings:
    return GenerationSettings(**{**TINY, **overrides})


def _randomize(model: torch.nn.Module, select, seed: int) -> None:
    """Give the selected (zero-initialised) parameters random values, so they matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if select(name):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


@pytest.fixture(scope="session")
def cascade_parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of the tiny SD and upscaler folders and of one model folder per stage.

    The base and long-video models get random temporal layers (they mix frames); the VSR model's
    temporal layers stay at their zero initialisation, so it upscales each frame on its own, which
    makes chunked and unchunked VSR comparable exactly."""
    root = tmp_path_factory.mktemp("cascade-parts")
    sd = write_tiny_sd(root / "sd", seed=0)
    upscaler = write_tiny_upscaler(root / "upscaler", seed=1)
    base = BaseUNet3DModel.from_pretrained_2d(sd / "unet")
    _randomize(base, is_temporal_key, seed=2)
    interpolation = InterpolationUNet3DModel.from_base(base)
    _randomize(interpolation, lambda name: name == "conv_in.weight", seed=3)
    long_video = LongVideoUNet3DModel.from_base(base)
    _randomize(long_video, lambda name: name == "conv_in.weight", seed=4)
    vsr = VSRUNet3DModel.from_pretrained_2d(upscaler / "unet")
    paths = {"sd": sd, "upscaler": upscaler}
    for name, model in dict(base=base, interpolation=interpolation, long_video=long_video, vsr=vsr).items():
        model.save_pretrained(root / name)
        paths[name] = root / name
    return paths


@pytest.fixture(scope="session")
def cascade_folder(cascade_parts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    parts = cascade_parts
    return assemble_cascade(
        tmp_path_factory.mktemp("cascade") / "tiny",
        sd=parts["sd"], upscaler=parts["upscaler"], base=parts["base"], interpolation=parts["interpolation"],
        vsr=parts["vsr"], long_video=parts["long_video"],
    )  # fmt: skip


@pytest.fixture(scope="session")
def base_only_cascade(cascade_parts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assemble_cascade(tmp_path_factory.mktemp("cascade") / "base-only", sd=cascade_parts["sd"],
                            base=cascade_parts["base"])  # fmt: skip
