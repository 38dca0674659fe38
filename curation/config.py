"""Curation configuration: every threshold is a value here, with the paper's default.

Loaded from YAML or JSON and validated on load (pydantic, unknown keys rejected), so a wrong key or
value fails before any work starts, with one line naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from lavie.core import config as core_config


class _Strict(core_config.StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SceneDetectionConfig(_Strict):
    """PySceneDetect settings (section 5.1: the primary videos are split into single scenes)."""

    detector: Literal["content", "adaptive"] = "content"
    threshold: float = Field(27.0, gt=0, description="ContentDetector threshold (its default)")
    adaptive_threshold: float = Field(3.0, gt=0, description="AdaptiveDetector threshold")
    min_scene_len: int = Field(15, ge=1, description="shortest scene the detector emits, frames")
    analysis_width: int = Field(
        256,
        ge=32,
        description="frames are decoded straight to this width for detection; PySceneDetect's own "
        "auto-downscale targets the same width, so cuts agree with its command line",
    )
    interpolation: Literal["fast_bilinear", "bilinear", "area"] = Field(
        "fast_bilinear",
        description="libswscale filter for the downscale to the analysis width; 'area' resamples like "
        "PySceneDetect's own pipeline (cv2.INTER_AREA) at about half the speed",
    )
    skip_deblocking: bool = Field(
        True, description="skip the H.264/HEVC loop filter: invisible at the analysis width, ~30% faster decode"
    )
    decoder_threads: Literal["none", "auto"] = Field(
        "none",
        description="'none': one decoding thread per video, parallelism across videos (one Ray task per "
        "core); 'auto': FFmpeg frame threads as well, for few long videos on many cores",
    )


class FilterConfig(_Strict):
    """The paper's filters: clips ≥ 16 frames, captions ≥ 3 words, height ≥ 720."""

    min_frames: int = Field(16, ge=1)
    min_caption_words: int = Field(3, ge=0)
    min_height: int = Field(720, ge=0)


class MotionConfig(_Strict):
    """Motion score per clip (see :mod:`curation.steps.motion`): computed by default, filtered only
    when ``min_motion`` or ``max_motion`` is set. NeMo Curator's static-clip threshold, 0.00098
    (its ``global_mean_threshold``), is the suggested ``min_motion``."""

    enabled: bool = True
    method: Literal["auto", "optical_flow"] = Field(
        "auto",
        description="'auto': the codec's motion vectors, optical flow where it has none; 'optical_flow': "
        "Farneback flow for every clip (slower; for codecs whose vectors should not be trusted)",
    )
    sample_fps: float = Field(2.0, gt=0, le=120, description="frames sampled per second of clip")
    flow_width: int = Field(160, ge=16, description="width of the frames optical flow is computed on")
    min_motion: float | None = Field(None, ge=0, le=1, description="reject clips whose motion score is lower")
    max_motion: float | None = Field(None, gt=0, le=1, description="reject clips whose motion score is higher")

    @model_validator(mode="after")
    def _range_is_ordered(self) -> MotionConfig:
        if self.min_motion is not None and self.max_motion is not None and self.min_motion >= self.max_motion:
            raise ValueError(f"min_motion {self.min_motion} must be below max_motion {self.max_motion}")
        return self


class ScoringConfig(_Strict):
    """Aesthetic score (LAION improved predictor over CLIP ViT-L/14) and text-frame CLIP similarity.

    All paths are local files; with ``clip_checkpoint`` or ``aesthetic_mlp`` unset, the stage is
    skipped, the score columns stay null and run.json says so.
    """

    clip_model: str = Field(
        "ViT-L-14",
        description="an open_clip model name, or a path to an open_clip model config JSON",
    )
    clip_checkpoint: str | None = Field(None, description="open_clip weights (.safetensors/.pt/.pth/.bin)")
    aesthetic_mlp: str | None = Field(None, description="aesthetic MLP state dict (.safetensors/.pth)")
    frame_positions: tuple[float, ...] = (0.1, 0.5, 0.9)
    batch_size: int = Field(16, ge=1)
    actors: int = Field(1, ge=1, description="scoring actors in the Ray actor pool")

    @field_validator("frame_positions")
    @classmethod
    def _positions_in_unit_interval(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0.0 <= p <= 1.0 for p in value):
            raise ValueError("must be a non-empty list of fractions in [0, 1]")
        return value

    @property
    def enabled(self) -> bool:
        return self.clip_checkpoint is not None and self.aesthetic_mlp is not None


class CaptionerConfig(_Strict):
    """Optional local image-to-text model (a transformers folder) that writes clip captions."""

    model: str = Field(description="local path of a transformers image-to-text model folder")
    mode: Literal["replace", "fill_missing"] = "fill_missing"
    max_new_tokens: int = Field(30, ge=1)
    batch_size: int = Field(8, ge=1)
    actors: int = Field(1, ge=1, description="captioning actors in the Ray actor pool")


class OverlayConfig(_Strict):
    """Optional overlaid-text and watermark filter: a local transformers image-classification
    model folder, and the name of its label that means text or a watermark."""

    model: str = Field(description="local path of a transformers AutoModelForImageClassification folder")
    label: str = Field(description="the model's label for frames with overlaid text or a watermark")
    threshold: float = Field(0.5, gt=0, le=1, description="reject clips whose overlay_score is at or above it")
    batch_size: int = Field(16, ge=1)
    actors: int = Field(1, ge=1, description="classifier actors in the Ray actor pool")


class CurationConfig(_Strict):
    scenes: SceneDetectionConfig = SceneDetectionConfig()
    filters: FilterConfig = FilterConfig()
    motion: MotionConfig = MotionConfig()
    scoring: ScoringConfig = ScoringConfig()
    captioner: CaptionerConfig | None = None
    overlay: OverlayConfig | None = None
    videos_per_shard: int = Field(
        64,
        ge=1,
        description="videos per shard: one Ray task and one output Parquet part, the unit of work and of "
        "resumption (64 keeps 25 M inputs to ~400 k shards and a shard's task to minutes)",
    )
    source_dataset: str = Field("vimeo25m", description="default when the metadata gives none")


def build_config(data: Mapping[str, Any], source: str = "config") -> CurationConfig:
    """Validate a plain mapping into a CurationConfig, raising a one-line UserError."""
    return core_config.validate(CurationConfig, data, source)


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> CurationConfig:
    """Read a YAML/JSON config file (or the defaults) and apply dotted-key overrides (CLI flags)."""
    return core_config.load_config(CurationConfig, path, overrides or {})
