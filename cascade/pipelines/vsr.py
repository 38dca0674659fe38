"""Video super-resolution (paper, section 4.3): a low-resolution video → ×4, 320×512 → 1280×2048.

The x4 upscaler's recipe on video: the low-resolution frames (RGB in [-1, 1]) are noised by the
upscaler's low-res DDPM schedule at ``noise_level`` and concatenated to the latents; the noise
level is the class label; DDIM with v-prediction; the x4 VAE decodes in fp32, 4 frames at a time.

Memory: the UNet runs on 8-frame chunks as the release does (``chunk_frames``), optionally with
overlapping chunks (``chunk_overlap``) and spatial tiles (``tile_size``/``tile_overlap``, in
low-res pixels), blended at every step (:mod:`cascade.pipelines.windows`). All noise is drawn for
the whole video up front, so a chunked run computes what an unchunked one does wherever the model's
receptive field stays inside a window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from cascade.errors import CascadeError
from cascade.models.vsr import VSRUNet3DModel
from cascade.pipelines.denoise import Conditioning, LoopSettings, StepCallback, denoise
from cascade.pipelines.folder import CascadeFolder
from cascade.pipelines.output import OutputType, VideoPipelineOutput, check_output_type
from cascade.pipelines.stage import StagePipeline, as_prompt_list, check_latent_size, initial_noise, load_scheduler
from cascade.pipelines.video_input import VideoInput, load_video
from cascade.pipelines.windows import WindowPlan

NEGATIVE_PROMPT = "blur, worst quality"


class VSRPipeline(StagePipeline):
    """Release defaults: DDIM v-prediction, 50 steps, guidance 5, noise level 50, negative prompt
    "blur, worst quality", 8-frame chunks, VAE in fp32 decoding 4 frames at a time."""

    stage = "vsr"
    model_class = VSRUNet3DModel
    parts = {"text_encoder": "vsr_text_encoder", "tokenizer": "vsr_tokenizer", "vae": "vsr_vae",
             "scheduler": "vsr_scheduler"}  # fmt: skip
    vae_dtype = torch.float32

    def configure(self, cascade: CascadeFolder) -> None:
        self.low_res_scheduler = load_scheduler(cascade.part("vsr_low_res_scheduler"))
        self.max_noise_level = cascade.max_noise_level

    @torch.no_grad()
    def __call__(
        self,
        video: VideoInput | None = None,
        prompt: str | Sequence[str] = "",
        negative_prompt: str | Sequence[str] | None = NEGATIVE_PROMPT,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        noise_level: int = 50,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: OutputType = "np",
        callback_on_step_end: StepCallback | None = None,
        decode_chunk_size: int | None = 4,
        chunk_frames: int | None = 8,
        chunk_overlap: int = 0,
        tile_size: int | None = None,
        tile_overlap: int = 0,
        pixels: torch.Tensor | None = None,
    ) -> VideoPipelineOutput:
        """``video``: the low-resolution frames (a file, an array or a tensor: see
        :func:`~cascade.pipelines.video_input.load_video`); or ``pixels`` ``(B, 3, F, h, w)`` in
        [-1, 1], what an earlier stage hands on."""
        if (video is None) == (pixels is None):
            raise CascadeError("vsr: give exactly one of video and pixels")
        pixels = load_video(video) if pixels is None else pixels
        windows = WindowPlan(chunk_frames, chunk_overlap, tile_size, tile_overlap)
        check_output_type(output_type)
        if not 0 <= noise_level <= self.max_noise_level:
            raise CascadeError(f"vsr: noise_level must be in [0, {self.max_noise_level}], got {noise_level}")
        prompts = as_prompt_list(prompt)
        b, _, f, h, w = pixels.shape
        check_latent_size(self.unet, h, w, 1, self.stage)
        if b != len(prompts):
            if b != 1:
                raise CascadeError(f"vsr: {b} videos for {len(prompts)} prompts")
            pixels = pixels.expand(len(prompts), -1, -1, -1, -1)
            b = len(prompts)
        started = time.perf_counter()
        with self.runtime.running(self.modules()):
            pixels = pixels.to(self.device).float()
            level = torch.full((b,), noise_level, dtype=torch.long, device=self.device)
            low_res_noise = initial_noise(tuple(pixels.shape), generator, self.device)
            low_res = self.low_res_scheduler.add_noise(pixels, low_res_noise, level)
            context, negative = self.encode_prompt(prompts, negative_prompt, guidance_scale)
            shape = (b, self.unet.config.out_channels, f, h, w)
            noise = initial_noise(shape, generator, self.device) if latents is None else latents.to(self.device).float()
            final = denoise(
                self.unet,
                self.scheduler,
                noise,
                Conditioning(context, negative, added_cond=low_res, class_labels=level),
                LoopSettings(num_inference_steps, guidance_scale, generator, eta=0.0, windows=windows,
                             callback_on_step_end=callback_on_step_end, progress=self.progress),  # fmt: skip
                pipeline=self,
                stage=self.stage,
            )
            return self.output(final, output_type, decode_chunk_size, started)

