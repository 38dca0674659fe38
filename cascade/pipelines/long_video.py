"""Long videos (paper, section 5.6): segments generated one after another, each conditioned on the
last frame of the one before.

Segment 0 comes from the base model. Segment k + 1 comes from the long-video model, whose extra
input channels hold the latent of segment k's last frame on every frame
(:func:`cascade.models.build_first_frame_condition`); it was trained to open on that frame, so its
first frame repeats it and is dropped. ``num_segments`` segments of ``F`` frames give
``F + (num_segments - 1)(F - 1)`` frames: 16 + 15(N − 1) key frames.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from cascade.encoders import decode_latents
from cascade.errors import CascadeError
from cascade.models.long_video import LongVideoUNet3DModel, build_first_frame_condition
from cascade.pipelines.base import TextToVideoPipeline
from cascade.pipelines.denoise import StepCallback
from cascade.pipelines.output import OutputType, VideoPipelineOutput, check_output_type, format_frames


def long_video_frames(num_frames: int, num_segments: int) -> int:
    return num_frames + (num_segments - 1) * (num_frames - 1)


class ContinuationPipeline(TextToVideoPipeline):
    """One continuing segment: the long-video model, the first frame given as ``added_cond``."""

    stage = "long_video"
    model_class = LongVideoUNet3DModel


class LongVideoPipeline:
    """The base stage for segment 0, the long-video model for the rest (their text encoder and
    VAE shared)."""

    def __init__(self, base: TextToVideoPipeline, continuation: ContinuationPipeline) -> None:
        self.base, self.continuation = base, continuation

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs: Any) -> LongVideoPipeline:
        shared: dict[str, Any] = kwargs.pop("shared", None) or {}
        base = TextToVideoPipeline.from_pretrained(folder, shared=shared, **kwargs)
        return cls(base, ContinuationPipeline.from_pretrained(folder, shared=shared, **kwargs))

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        self.base.set_progress_bar_config(**kwargs)
        self.continuation.set_progress_bar_config(**kwargs)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        negative_prompt: str | Sequence[str] | None = "",
        num_segments: int = 2,
        num_frames: int = 16,
        height: int = 320,
        width: int = 512,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        generator: torch.Generator | None = None,
        output_type: OutputType = "np",
        callback_on_step_end: StepCallback | None = None,
        decode_chunk_size: int | None = 8,
    ) -> VideoPipelineOutput:
        check_output_type(output_type)
        if num_segments < 1 or num_frames < 2:
            raise CascadeError(f"long video: needs num_segments >= 1 and num_frames >= 2, got {num_segments} and {num_frames}")
        settings = dict(negative_prompt=negative_prompt, num_frames=num_frames, height=height, width=width,
                        num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=generator,
                        output_type="latent", callback_on_step_end=callback_on_step_end)  # fmt: skip
        first = self.base(prompt, **settings)
        segments, seconds = [first.latents], dict(first.seconds)
        for _ in range(num_segments - 1):
            condition = build_first_frame_condition(segments[-1][:, :, -1], num_frames)
            segment = self.continuation(prompt, added_cond=condition, **settings)
            segments.append(segment.latents[:, :, 1:])
            seconds["long_video"] = seconds.get("long_video", 0.0) + segment.seconds["long_video"]
        final = torch.cat(segments, dim=2)
        if output_type == "latent":
            return VideoPipelineOutput(final, final, seconds)
        started = time.perf_counter()
        vae = self.base.vae
        with self.base.runtime.running([vae]):
            frames = format_frames(decode_latents(vae, final.to(self.base.device), decode_chunk_size), output_type)
        seconds["long_video"] = seconds.get("long_video", 0.0) + time.perf_counter() - started
        return VideoPipelineOutput(frames, final, seconds)
