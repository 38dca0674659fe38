"""Temporal interpolation (paper, section 4.2): N frames → 4(N − 1) + 1 frames, 16 → 61.

Every output frame is generated; the input frames condition the model through their VAE latents
laid onto the output grid (:func:`cascade.models.build_interpolation_condition`). A video longer
than ``window_frames`` key frames is interpolated in windows that share their end frames (a long
video of 16 + 15(N − 1) key frames becomes 61 + 60(N − 1) frames).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from cascade.encoders import encode_video_latents
from cascade.errors import CascadeError
from cascade.models.interpolation import INTERPOLATION_FACTOR, InterpolationUNet3DModel, build_interpolation_condition
from cascade.pipelines.denoise import Conditioning, LoopSettings, StepCallback, denoise
from cascade.pipelines.output import OutputType, VideoPipelineOutput, check_output_type
from cascade.pipelines.stage import StagePipeline, as_prompt_list, check_latent_size, initial_noise, vae_scale
from cascade.pipelines.video_input import VideoInput, load_video
from cascade.pipelines.windows import spans

#: The release appends this to the prompt of its interpolation stage.
PROMPT_SUFFIX = ", 4k."


def output_frames(num_key_frames: int) -> int:
    return INTERPOLATION_FACTOR * (num_key_frames - 1) + 1


class InterpolationPipeline(StagePipeline):
    """Release defaults: DDIM (η = 0), 50 steps, guidance 4, prompt + ", 4k.", 16 key frames."""

    stage = "interpolation"
    model_class = InterpolationUNet3DModel
    parts = {**StagePipeline.parts, "scheduler": "interpolation_scheduler"}

    @torch.no_grad()
    def __call__(
        self,
        video: VideoInput | None = None,
        prompt: str | Sequence[str] = "",
        negative_prompt: str | Sequence[str] | None = "",
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 4.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: OutputType = "np",
        callback_on_step_end: StepCallback | None = None,
        decode_chunk_size: int | None = 8,
        video_latents: torch.Tensor | None = None,
        window_frames: int | None = 16,
        prompt_suffix: str = PROMPT_SUFFIX,
    ) -> VideoPipelineOutput:
        """``video``: the key frames (a file, an array or a tensor: see :func:`load_video`), resized
        to ``height``×``width`` when given; or ``video_latents`` ``(B, C, N, h, w)``, the scaled
        latents of the key frames (what the base stage hands on). ``latents``: initial noise for
        all output frames."""
        check_output_type(output_type)
        prompts = [p + prompt_suffix for p in as_prompt_list(prompt)]
        started = time.perf_counter()
        with self.runtime.running(self.modules()):
            keys = self._key_latents(video, video_latents, height, width, len(prompts))
            context, negative = self.encode_prompt(prompts, negative_prompt, guidance_scale)
            b, c, n, h, w = keys.shape
            total = output_frames(n)
            noise = initial_noise((b, c, total, h, w), generator, self.device) if latents is None else latents.to(self.device).float()
            settings = LoopSettings(num_inference_steps, guidance_scale, generator, eta=0.0,
                                    callback_on_step_end=callback_on_step_end, progress=self.progress)  # fmt: skip
            pieces = []
            for start, stop in spans(n, window_frames, overlap=1):
                out0, out1 = INTERPOLATION_FACTOR * start, INTERPOLATION_FACTOR * (stop - 1) + 1
                condition = build_interpolation_condition(keys[:, :, start:stop])
                piece = denoise(self.unet, self.scheduler, noise[:, :, out0:out1],
                                Conditioning(context, negative, added_cond=condition), settings,
                                pipeline=self, stage=self.stage)  # fmt: skip
                pieces.append(piece if not pieces else piece[:, :, 1:])  # the shared frame comes from the earlier window
            final = torch.cat(pieces, dim=2)
            return self.output(final, output_type, decode_chunk_size, started)

    def _key_latents(
        self, video: VideoInput | None, video_latents: torch.Tensor | None, height: int | None, width: int | None, batch: int
    ) -> torch.Tensor:
        if (video is None) == (video_latents is None):
            raise CascadeError("interpolation: give exactly one of video (frames) and video_latents")
        if video_latents is not None:
            keys = video_latents.to(self.device).float()
        else:
            size = (height, width) if height and width else None
            pixels = load_video(video, size)
            check_latent_size(self.unet, pixels.shape[-2], pixels.shape[-1], vae_scale(self.vae), self.stage)
            keys = encode_video_latents(self.vae, pixels.to(self.device), batch_frames=8).float()
        scale = vae_scale(self.vae)
        check_latent_size(self.unet, keys.shape[-2] * scale, keys.shape[-1] * scale, scale, self.stage)
        if keys.shape[2] < 2:
            raise CascadeError(f"interpolation: needs at least 2 key frames, the video has {keys.shape[2]}")
        if keys.shape[0] != batch:
            if keys.shape[0] != 1:
                raise CascadeError(f"interpolation: {keys.shape[0]} videos for {batch} prompts")
            keys = keys.expand(batch, -1, -1, -1, -1)
        return keys
