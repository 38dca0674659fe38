"""The whole cascade (paper, Figure 3): text → 16 key frames → 61 frames → ×4 resolution.

Stages hand over what the next one needs without a round trip through files: the base's latents
condition the interpolation directly; the VSR takes the decoded low-resolution frames. Each stage's
networks occupy the GPU only while it runs when ``offload`` is on.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cascade.encoders import decode_latents
from cascade.errors import CascadeError
from cascade.pipelines.base import TextToVideoPipeline
from cascade.pipelines.denoise import StepCallback
from cascade.pipelines.folder import CascadeFolder
from cascade.pipelines.interpolation import InterpolationPipeline
from cascade.pipelines.long_video import LongVideoPipeline
from cascade.pipelines.output import format_frames
from cascade.pipelines.settings import GenerationSettings
from cascade.pipelines.stage import check_size, halvings
from cascade.pipelines.video_input import VideoInput, load_video
from cascade.pipelines.vsr import VSRPipeline
from lavie.core.config import read_mapping


@dataclass
class CascadeOutput:
    """``frames``: float32 ``(B, F, H, W, 3)`` in [0, 1]; ``fps`` to write them at; ``seconds``
    of each stage that ran."""

    frames: np.ndarray
    fps: float
    seconds: dict[str, float] = field(default_factory=dict)


class CascadePipeline:
    """The stages a :class:`GenerationSettings` asks for, loaded from one cascade folder."""

    def __init__(
        self,
        base: TextToVideoPipeline | LongVideoPipeline | None = None,
        interpolation: InterpolationPipeline | None = None,
        vsr: VSRPipeline | None = None,
    ) -> None:
        self.base, self.interpolation, self.vsr = base, interpolation, vsr

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, settings: GenerationSettings, *, device: torch.device | str | None = None
    ) -> CascadePipeline:
        cls.check(folder, settings)
        options: dict[str, Any] = dict(device=device, dtype=settings.dtype, offload=settings.offload)
        shared: dict[str, Any] = {}
        base: TextToVideoPipeline | LongVideoPipeline | None = None
        if "base" in settings.stages:
            loader = LongVideoPipeline if settings.mode == "long" else TextToVideoPipeline
            base = loader.from_pretrained(folder, scheduler=settings.base_scheduler, shared=shared, **options)
            if settings.lora:
                text_to_video = base.base if isinstance(base, LongVideoPipeline) else base
                text_to_video.load_lora(settings.lora, settings.lora_scale)
        interpolation = (
            InterpolationPipeline.from_pretrained(folder, shared=shared, **options)
            if "interpolation" in settings.stages else None
        )  # fmt: skip
        vsr = VSRPipeline.from_pretrained(folder, shared=shared, **options) if "vsr" in settings.stages else None
        return cls(base, interpolation, vsr)

    @staticmethod
    def check(folder: str | os.PathLike, settings: GenerationSettings) -> None:
        """The folder is a cascade holding every stage the settings run (one-line errors)."""
        cascade = CascadeFolder.open(folder)
        for stage in settings.stages + (["long_video"] if settings.mode == "long" else []):
            cascade.stage_model(stage)
        if settings.starts_from_text:
            unet_config = read_mapping(cascade.stage_model("base") / "config.json")
            vae_config = read_mapping(cascade.part("vae") / "config.json")
            check_size(unet_config, settings.height, settings.width, halvings(vae_config), "base")
        if settings.lora and not Path(settings.lora).exists():
            raise CascadeError(f"{settings.lora}: no such LoRA adapter")

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        for stage in (self.base, self.interpolation, self.vsr):
            if stage is not None:
                stage.set_progress_bar_config(**kwargs)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        settings: GenerationSettings,
        generator: torch.Generator | None = None,
        video: VideoInput | None = None,
        callback_on_step_end: StepCallback | None = None,
    ) -> CascadeOutput:
        """One video for ``prompt``. Runs that start after the base take ``video`` (the key frames
        for interpolation, the low-resolution video for VSR)."""
        seconds: dict[str, float] = {}
        latents, pixels = None, None
        if settings.starts_from_text:
            if video is not None:
                raise CascadeError("an input video is for runs that start after the base stage (--stages interp or vsr)")
            latents = self._run_base(prompt, settings, generator, callback_on_step_end, seconds)
        elif video is None:
            raise CascadeError(f"stages {','.join(settings.stages)} start from a video: give one")
        elif self.interpolation is None:
            pixels = load_video(video)  # the VSR's low-resolution input
        if self.interpolation is not None:
            result = self.interpolation(
                video=video,
                video_latents=latents,
                prompt=prompt,
                num_inference_steps=settings.interpolation_steps,
                guidance_scale=settings.interpolation_guidance,
                generator=generator,
                output_type="latent",
                callback_on_step_end=callback_on_step_end,
            )
            latents, pixels = result.latents, None
            seconds.update(result.seconds)
        if self.vsr is not None:
            if pixels is None:
                pixels = self._decode(latents, settings, seconds)
            result = self.vsr(
                pixels=pixels,
                prompt=prompt,
                negative_prompt=settings.vsr_negative_prompt,
                num_inference_steps=settings.vsr_steps,
                guidance_scale=settings.vsr_guidance,
                noise_level=settings.noise_level,
                generator=generator,
                callback_on_step_end=callback_on_step_end,
                chunk_frames=settings.vsr_chunk_frames,
                chunk_overlap=settings.vsr_chunk_overlap,
                tile_size=settings.vsr_tile,
                tile_overlap=settings.vsr_tile_overlap,
            )
            seconds.update(result.seconds)
            frames = result.frames
        else:
            frames = format_frames(pixels if pixels is not None else self._decode(latents, settings, seconds), "np")
        return CascadeOutput(frames, settings.output_fps(), seconds)

    def _run_base(
        self,
        prompt: str,
        settings: GenerationSettings,
        generator: torch.Generator | None,
        callback: StepCallback | None,
        seconds: dict[str, float],
    ) -> torch.Tensor:
        common = dict(negative_prompt=settings.negative_prompt, num_frames=settings.frames, height=settings.height,
                      width=settings.width, num_inference_steps=settings.base_steps, guidance_scale=settings.base_guidance,
                      generator=generator, output_type="latent", callback_on_step_end=callback)  # fmt: skip
        if isinstance(self.base, LongVideoPipeline):
            result = self.base(prompt, num_segments=settings.num_segments, **common)
        else:
            result = self.base(prompt, **common)
        seconds.update(result.seconds)
        return result.latents

    def _decode(self, latents: torch.Tensor, settings: GenerationSettings, seconds: dict[str, float]) -> torch.Tensor:
        """Pixels ``(B, 3, F, H, W)`` in [-1, 1] of the SD VAE's latents (base or interpolation)."""
        owner = self.interpolation or self.base
        stage = owner.base if isinstance(owner, LongVideoPipeline) else owner
        started = time.perf_counter()
        with stage.runtime.running([stage.vae]):
            pixels = decode_latents(stage.vae, latents.to(stage.device), settings.decode_chunk_size)
        seconds["decode"] = seconds.get("decode", 0.0) + time.perf_counter() - started
        return pixels

