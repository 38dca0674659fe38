"""Frozen conditioning models: the CLIP text encoder and the SD VAE, from a local SD folder.

:meth:`Conditioner.prepare` turns a collated batch of the data stream (``video`` (B, T, 3, H, W)
and ``images`` (B, M, 3, H, W) uint8, captions as strings) into the UNet's inputs:

* latents ``(B, 4, T + M, h, w)``: the video frames first, then the M images (the layout
  ``UNet3DConditionModel.forward(num_image_frames=M)`` expects), sampled from the VAE posterior
  and multiplied by the VAE's ``scaling_factor``;
* text embeddings ``(B, T + M, L, D)``: the video caption for each video frame, each image's own
  caption for its frame (the CLIP text encoder's last hidden state, as SD uses);
* captions replaced by ``""`` with probability ``caption_dropout`` (classifier-free guidance), each
  caption independently.

Every draw comes from generators keyed by (seed, step, rank, micro-step): see :mod:`training.rng`.

Precomputed latents: with ``latent_cache`` set, the VAE posterior moments (mean and log-variance)
of each clip (keyed by clip id, frame indices and size) and each image (image id and size) are
written to that folder on first use and read from it afterwards, skipping the VAE encoder; the
posterior *sample* is still drawn per step, so results are identical with and without the cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import rng


@dataclass
class UNetInputs:
    latents: torch.Tensor  # (B, C, T + M, h, w)
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
        latent_cache: str | Path | None = None,
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
        self.max_length = min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings)
        self.cache = LatentCache(latent_cache) if latent_cache else None
        self._vae_tag = hashlib.sha1(str(sorted(self.vae.config.items())).encode()).hexdigest()[:8]

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """``(N, L, D)`` last hidden states for ``N`` captions; identical captions encoded once."""
        unique = sorted(set(captions))
        tokens = self.tokenizer(
            unique, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        hidden = self.text_encoder(tokens.input_ids.to(self.device))[0]
        index = torch.tensor([unique.index(c) for c in captions], device=hidden.device)
        return hidden.index_select(0, index)

    # ------------------------------------------------------------------ pixels
    @torch.no_grad()
    def moments(self, frames: torch.Tensor) -> torch.Tensor:
        """VAE posterior parameters ``(N, 2C, h, w)`` (mean, log-variance) of uint8 ``(N, 3, H, W)``."""
        out = []
        for chunk in frames.split(self.vae_batch_frames):
            pixels = chunk.to(self.device, non_blocking=True).to(self.dtype) / 127.5 - 1.0
            out.append(self.vae.encode(pixels).latent_dist.parameters)
        return torch.cat(out)

    def sample(self, moments: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scaled posterior samples ``(N, C, h, w)`` from moments (SD's ``latent_dist.sample()``)."""
        mean, logvar = moments.chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return (mean + std * noise) * self.scaling_factor

    def _batch_moments(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Moments of the videos ``(B, T, 2C, h, w)`` and images ``(B, M, 2C, h, w)``."""
        video, images = batch["video"], batch["images"]
        b, t, m = video.shape[0], video.shape[1], images.shape[1]
        if self.cache is None:
            frames = torch.cat([video.flatten(0, 1), images.flatten(0, 1)])
            moments = self.moments(frames)
            video_m = moments[: b * t].unflatten(0, (b, t))
            image_m = moments[b * t :].unflatten(0, (b, m))
            return video_m, image_m
        size = f"{video.shape[-2]}x{video.shape[-1]}"
        video_keys = [
            f"clip-{clip}-{'-'.join(map(str, indices.tolist()))}-{size}-{self._vae_tag}"
            for clip, indices in zip(batch["clip_id"], batch["frame_indices"])
        ]
        image_keys = [f"image-{i}-{size}-{self._vae_tag}" for ids in batch["image_ids"] for i in ids]
        video_m = torch.stack(
            [self.cache.get_or_compute(key, lambda j=j: self.moments(video[j])) for j, key in enumerate(video_keys)]
        )
        flat_images = images.flatten(0, 1)
        image_list = [
            self.cache.get_or_compute(key, lambda j=j: self.moments(flat_images[j : j + 1])[0])
            for j, key in enumerate(image_keys)
        ]
        image_m = (
            torch.stack(image_list).unflatten(0, (b, m))
            if image_list
            else video_m.new_zeros((b, 0, *video_m.shape[2:]))
        )
        return video_m.to(self.device), image_m.to(self.device)

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
            context=context.contiguous(),
            num_video_frames=t,
            num_image_frames=m,
            dropped_captions=dropped,
        )


class LatentCache:
    """VAE moments stored one file per key under a folder (shared by all ranks on a node or a
    shared filesystem); written atomically, so concurrent writers of one key are harmless."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.pt"

    def get_or_compute(self, key: str, compute: Any) -> torch.Tensor:
        path = self._path(key)
        if path.is_file():
            try:
                value = torch.load(path, map_location="cpu", weights_only=True)
                self.hits += 1
                return value
            except Exception:  # a torn or foreign file: recompute and overwrite
                pass
        self.misses += 1
        value = compute().detach()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save(value.cpu(), tmp)
        os.replace(tmp, path)
        return value.cpu()
