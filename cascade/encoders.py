"""The frozen encoders around the UNets: CLIP text embeddings and the VAE, in both directions.

Training (``training.conditioning``, the latent precompute job) and inference
(``cascade.pipelines``) encode through these functions, so a model is sampled with exactly the
text and latent conventions it was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


@torch.no_grad()
def encode_prompts(tokenizer: Any, text_encoder: Any, prompts: Sequence[str], device: torch.device) -> torch.Tensor:
    """``(N, L, D)`` last hidden states of the CLIP text encoder (what SD conditions on) for ``N``
    prompts, padded to the encoder's length; identical prompts are encoded once."""
    max_length = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
    unique = sorted(set(prompts))
    tokens = tokenizer(unique, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    hidden = text_encoder(tokens.input_ids.to(device))[0]
    index = torch.tensor([unique.index(p) for p in prompts], device=hidden.device)
    return hidden.index_select(0, index)


@torch.no_grad()
def vae_moments(vae: Any, frames: torch.Tensor, batch_frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """VAE posterior parameters ``(N, 2C, h, w)`` (mean, log-variance) of uint8 frames
    ``(N, 3, H, W)``, ``batch_frames`` at a time."""
    out = []
    for chunk in frames.split(batch_frames):
        pixels = chunk.to(device, non_blocking=True).to(dtype) / 127.5 - 1.0
        out.append(vae.encode(pixels).latent_dist.parameters)
    return torch.cat(out)


@torch.no_grad()
def encode_video_latents(vae: Any, video: torch.Tensor, batch_frames: int | None = None) -> torch.Tensor:
    """Scaled VAE posterior means ``(B, C, F, h, w)`` of a video ``(B, 3, F, H, W)`` in [-1, 1]
    (the deterministic encoding used to condition on an existing video)."""
    b, _, f = video.shape[:3]
    frames = video.transpose(1, 2).flatten(0, 1)
    chunks = frames.split(batch_frames or frames.shape[0])
    dtype = next(vae.parameters()).dtype
    means = [vae.encode(chunk.to(dtype)).latent_dist.mean for chunk in chunks]
    latents = torch.cat(means) * vae.config.scaling_factor
    return latents.unflatten(0, (b, f)).transpose(1, 2)


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
    """Pixels ``(B, 3, F, H, W)`` in [-1, 1] (float32) of scaled latents ``(B, C, F, h, w)``,
    decoded ``chunk_frames`` frames at a time (``None``: all at once). The VAE decodes each frame
    on its own, so chunking changes peak memory, not the result."""
    b, _, f = latents.shape[:3]
    frames = latents.transpose(1, 2).flatten(0, 1) / vae.config.scaling_factor
    dtype = next(vae.parameters()).dtype
    chunks = frames.split(chunk_frames or frames.shape[0])
    pixels = torch.cat([vae.decode(chunk.to(dtype)).sample.float() for chunk in chunks])
    return pixels.clamp(-1.0, 1.0).unflatten(0, (b, f)).transpose(1, 2)
