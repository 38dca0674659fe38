"""Inference: one pipeline per stage of the cascade, one that chains them, and the cascade folder.

Pipelines compose models, diffusers schedulers, the VAE and the text encoder; they own no network
math (that is :mod:`cascade.models`). They follow diffusers' video pipelines: ``from_pretrained``
on a folder, ``__call__`` returning ``.frames``.
"""

from cascade.pipelines.base import TextToVideoPipeline
from cascade.pipelines.cascade import CascadeOutput, CascadePipeline
from cascade.pipelines.folder import CascadeFolder, assemble_cascade
from cascade.pipelines.interpolation import InterpolationPipeline
from cascade.pipelines.long_video import ContinuationPipeline, LongVideoPipeline, long_video_frames
from cascade.pipelines.output import VideoPipelineOutput
from cascade.pipelines.settings import GenerationSettings
from cascade.pipelines.vsr import VSRPipeline
from cascade.pipelines.windows import WindowPlan

__all__ = [
    "CascadeFolder",
    "CascadeOutput",
    "CascadePipeline",
    "ContinuationPipeline",
    "GenerationSettings",
    "InterpolationPipeline",
    "LongVideoPipeline",
    "TextToVideoPipeline",
    "VSRPipeline",
    "VideoPipelineOutput",
    "WindowPlan",
    "assemble_cascade",
    "long_video_frames",
]
