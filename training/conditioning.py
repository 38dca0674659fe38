"""Frozen conditioning models: the CLIP text encoder and the SD VAE, from a local SD folder.

:meth:`Conditioner.prepare` turns a collated batch of the data stream (``video`` (B, T, 3, H, W)
and ``images`` (B, M, 3, H, W) uint8, captions as strings) into the UNet's inputs:

* latents ``(B, 4, T + M, h, w)``: the video frames first, then the M images (the layout
  ``BaseUNet3DModel.forward(num_image_frames=M)`` expects), sampled from the VAE posterior
  and multiplied by the VAE's ``scaling_factor`` (and the posterior means, scaled alike: what
  the conditioned models take as their clean conditioning latents, as the pipelines do);
* text embeddings ``(B, T + M, L, D)``: the video caption for each video frame, each image's own
  caption for its frame (the CLIP text encoder's last hidden state, as SD uses);
* captions replaced by ``""`` with probability ``caption_dropout`` (classifier-free guidance), each
  caption independently.

Every draw comes from generators keyed by (seed, step, rank, micro-step): see :mod:`training.rng`.

Precomputed latents: with a :class:`training.latent_store.LatentStore`, items the data stream read
from the store arrive as VAE posterior moments and skip the encoder; the others are encoded and
stored for next time. The posterior *sample* is still drawn per step, so results are the same
with and without the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cascade.encoders import encode_prompts, vae_moments
from training import rng
from training.latent_store import LatentStore


@dataclass
class UNetInputs:
    latents: torch.Tensor  # (B, C, T + M, h, w)
    mean_latents: torch.Tensor  # (B, C, T + M, h, w), the posterior means
    context: torch.Tensor  # (B, T + M, L, D)
    num_video_frames: int
    num_image_frames: int
    dropped_captions: int


def drop_captions(
    captions: Sequence[str], probability: float, generator: np.random.Generator
) -> tuple[list[str], int]:
    """Each caption independently replaced by ``""`` with ``probability``; also the number dropped."""
    keep = generator.random(len(captions)) >= probability
    return [c if k else "" for c, k in zip(captions, keep)], int((~keep).sum())


class Conditioner:
    """The frozen text encoder, tokenizer and VAE of an SD folder, on ``device`` in ``dtype``."""

    def __init__(
        self,
        pretrained: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        vae_batch_frames: int = 64,
        latent_store: LatentStore | None = None,
    ) -> None:
        from diffusers import AutoencoderKL
        from transformers import CLIPTextModel, CLIPTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        pretrained = Path(pretrained)
        self.device = torch.device(device)
        self.dtype = dtype
        self.tokenizer = CLIPTokenizer.from_pretrained(pretrained / "tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(pretrained / "text_encoder", dtype=dtype)
        self.text_encoder.to(self.device).eval().requires_grad_(False)
        self.vae = AutoencoderKL.from_pretrained(pretrained / "vae", torch_dtype=dtype)
        self.vae.to(self.device).eval().requires_grad_(False)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.vae_batch_frames = vae_batch_frames
        self.store = latent_store

    # ------------------------------------------------------------------ text
    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """``(N, L, D)`` last hidden states for ``N`` captions; identical captions encoded once."""
        return encode_prompts(self.tokenizer, self.text_encoder, captions, self.device)

    # ------------------------------------------------------------------ pixels
    @torch.no_grad()
    def moments(self, frames: torch.Tensor) -> torch.Tensor:
        """VAE posterior parameters ``(N, 2C, h, w)`` (mean, log-variance) of uint8 ``(N, 3, H, W)``."""
        return vae_moments(self.vae, frames, self.vae_batch_frames, self.device, self.dtype)

    def sample(self, moments: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scaled posterior samples ``(N, C, h, w)`` from moments (SD's ``latent_dist.sample()``)."""
        mean, logvar = moments.chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return (mean + std * noise) * self.scaling_factor

    def _batch_moments(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Moments of the videos ``(B, T, 2C, h, w)`` and images ``(B, M, 2C, h, w)``."""
        video, images = batch["video"], batch["images"]  # tensors, or lists of items from the store
        b, t, m = len(batch["clip_id"]), batch["frame_indices"].shape[1], len(batch["image_ids"][0])
        if self.store is None:
            frames = torch.cat([video.flatten(0, 1), images.flatten(0, 1)])
            moments = self.moments(frames)
            video_m = moments[: b * t].unflatten(0, (b, t))
            image_m = moments[b * t :].unflatten(0, (b, m))
            return video_m, image_m
        video_m = torch.stack([
            self._stored_moments(video[j], LatentStore.clip_key(clip, indices.tolist()))
            for j, (clip, indices) in enumerate(zip(batch["clip_id"], batch["frame_indices"]))
        ])  # fmt: skip
        image_list = [
            self._stored_moments(images[j][k], LatentStore.image_key(image_id))
            for j, ids in enumerate(batch["image_ids"])
            for k, image_id in enumerate(ids)
        ]
        image_m = (
            torch.stack(image_list).unflatten(0, (b, m)) if image_list else video_m.new_zeros((b, 0, *video_m.shape[2:]))
        )
        return video_m.to(self.device), image_m.to(self.device)

    def _stored_moments(self, item: torch.Tensor, key: str) -> torch.Tensor:
        """Moments of one clip ``(T, 2C, h, w)`` or image ``(2C, h, w)``: as the data stream read
        them from the store (float), from the store, or encoded from uint8 pixels and stored."""
        if item.is_floating_point():
            return item
        moments = self.store.get(key)
        if moments is None:
            moments = self.moments(item if item.dim() == 4 else item.unsqueeze(0)).cpu()
            moments = moments if item.dim() == 4 else moments[0]
            self.store.put(key, moments)
        return moments

    # ------------------------------------------------------------------ batch
    def prepare(
        self, batch: dict[str, Any], *, seed: int, step: int, rank: int, micro: int, caption_dropout: float
    ) -> UNetInputs:
        """UNet inputs of one micro-batch (see the module docstring)."""
        video_m, image_m = self._batch_moments(batch)
        b, t, m = video_m.shape[0], video_m.shape[1], image_m.shape[1]
        generator = rng.keyed_generator(seed, rng.VAE_SAMPLE, step, rank, micro, device=self.device)
        moments = torch.cat([video_m, image_m], dim=1)  # (B, T + M, 2C, h, w)
        latents = self.sample(moments.flatten(0, 1), generator).unflatten(0, (b, t + m))
        means = moments.chunk(2, dim=2)[0] * self.scaling_factor

        captions = list(batch["video_caption"]) + [c for per in batch["image_captions"] for c in per]
        kept, dropped = drop_captions(
            captions, caption_dropout, rng.keyed_numpy(seed, rng.CAPTION_DROPOUT, step, rank, micro)
        )
        hidden = self.encode_text(kept)  # (B + B*M, L, D)
        video_ctx = hidden[:b].unsqueeze(1).expand(b, t, *hidden.shape[1:])
        image_ctx = hidden[b:].unflatten(0, (b, m)) if m else hidden.new_zeros((b, 0, *hidden.shape[1:]))
        context = torch.cat([video_ctx, image_ctx], dim=1)
        return UNetInputs(
            latents=latents.transpose(1, 2).contiguous(),  # (B, C, T + M, h, w)
            mean_latents=means.transpose(1, 2).contiguous(),
            context=context.contiguous(),
            num_video_frames=t,
            num_image_frames=m,
            dropped_captions=dropped,
        )
