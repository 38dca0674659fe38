"""Text to video (and, with one frame, text to image) with the base model (paper, section 4.1)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from cascade.errors import CascadeError
from cascade.models.lora import load_spatial_lora
from cascade.models.unet_3d import BaseUNet3DModel
from cascade.pipelines.denoise import Conditioning, LoopSettings, StepCallback, denoise
from cascade.pipelines.output import OutputType, VideoPipelineOutput, check_output_type
from cascade.pipelines.stage import (
    StagePipeline,
    as_prompt_list,
    check_latent_size,
    initial_noise,
    vae_scale,
)

LORA_ADAPTER = "lavie_lora"


class TextToVideoPipeline(StagePipeline):
    """16 key frames at 320×512 from a prompt; the release's defaults (DDPM, 50 steps, guidance
    7.5, negative prompt ""). ``num_frames=1`` is text to image."""

    stage = "base"
    model_class = BaseUNet3DModel

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        negative_prompt: str | Sequence[str] | None = "",
        num_frames: int = 16,
        height: int = 320,
        width: int = 512,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: OutputType = "np",
        callback_on_step_end: StepCallback | None = None,
        decode_chunk_size: int | None = 8,
        added_cond: torch.Tensor | None = None,
    ) -> VideoPipelineOutput:
        """``latents``: initial noise ``(B, C, F, h, w)`` instead of drawing it from ``generator``.
        ``decode_chunk_size``: frames the VAE decodes at a time (``None``: all at once)."""
        check_output_type(output_type)
        prompts = as_prompt_list(prompt)
        if num_frames < 1:
            raise CascadeError(f"num_frames must be at least 1, got {num_frames}")
        per_latent = vae_scale(self.vae)
        check_latent_size(self.unet, height, width, per_latent, self.stage)
        started = time.perf_counter()
        with self.runtime.running(self.modules()):
            context, negative = self.encode_prompt(prompts, negative_prompt, guidance_scale)
            shape = (len(prompts), self.unet.config.out_channels, num_frames, height // per_latent, width // per_latent)
            noise = initial_noise(shape, generator, self.device) if latents is None else latents.to(self.device).float()
            final = denoise(
                self.unet,
                self.scheduler,
                noise,
                Conditioning(context, negative, added_cond=added_cond),
                LoopSettings(num_inference_steps, guidance_scale, generator,
                             callback_on_step_end=callback_on_step_end, progress=self.progress),  # fmt: skip
                pipeline=self,
                stage=self.stage,
            )
            return self.output(final, output_type, decode_chunk_size, started)

    # ------------------------------------------------------------------ LoRA (paper, section 5.6)
    def load_lora(self, path: str | Path, scale: float = 1.0) -> None:
        """Apply a spatial adapter saved by ``save_spatial_lora`` at ``scale`` (0 turns it off)."""
        if LORA_ADAPTER in getattr(self.unet, "peft_config", {}):
            self.unload_lora()
        load_spatial_lora(self.unet, path, adapter_name=LORA_ADAPTER)
        self.unet.set_adapters([LORA_ADAPTER], weights=[scale])

    def unload_lora(self) -> None:
        """Remove the adapter; the UNet computes exactly what it did before :meth:`load_lora`."""
        self.unet.unload_lora()
