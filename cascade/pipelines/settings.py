"""Every setting of a cascade run, as one validated, JSON-serialisable object.

The command line, the batch generator and :class:`~cascade.pipelines.cascade.CascadePipeline`
take the same :class:`GenerationSettings`; a batch manifest records it per video, so any video can
be regenerated exactly. Defaults are the release's (``DESIGN.md``, "Inference").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from lavie.core.config import StrictModel

#: The stages of the cascade in the order they run (``interp`` is accepted for interpolation).
STAGE_ORDER = ("base", "interpolation", "vsr")
STAGE_ALIASES = {"interp": "interpolation"}
#: Frame rates of the written video: the base's key frames, and after ×4 interpolation.
BASE_FPS = 8.0
INTERPOLATED_FPS = 24.0


class GenerationSettings(StrictModel):
    """A cascade run. ``mode``: ``video`` (text to video), ``image`` (the base model with one frame,
    paper §4.1) or ``long`` (``num_segments`` segments from the long-video model, §5.6).
    ``stages`` run in the cascade's order; runs that start after the base take an input video."""

    stages: list[str] = Field(default_factory=lambda: ["base"])
    mode: Literal["video", "image", "long"] = "video"
    num_segments: int = Field(2, ge=1)
    num_frames: int = Field(16, ge=1)
    height: int = Field(320, gt=0)
    width: int = Field(512, gt=0)
    negative_prompt: str = ""
    decode_chunk_size: int | None = Field(8, ge=1)

    base_scheduler: Literal["ddpm", "ddim", "euler"] | None = None
    base_steps: int = Field(50, ge=1)
    base_guidance: float = Field(7.5, ge=0.0)

    interpolation_steps: int = Field(50, ge=1)
    interpolation_guidance: float = Field(4.0, ge=0.0)

    vsr_steps: int = Field(50, ge=1)
    vsr_guidance: float = Field(5.0, ge=0.0)
    vsr_negative_prompt: str = "blur, worst quality"
    noise_level: int = Field(50, ge=0)
    vsr_chunk_frames: int | None = Field(8, ge=1)
    vsr_chunk_overlap: int = Field(0, ge=0)
    vsr_tile: int | None = Field(None, ge=1)
    vsr_tile_overlap: int = Field(0, ge=0)

    lora: str | None = None
    lora_scale: float = 1.0
    fps: float | None = Field(None, gt=0)
    dtype: Literal["fp32", "bf16", "fp16"] | None = None
    offload: bool = False

    @field_validator("stages", mode="before")
    @classmethod
    def _stage_names(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            return value
        stages = [STAGE_ALIASES.get(stage, stage) for stage in value]
        unknown = [stage for stage in stages if stage not in STAGE_ORDER]
        if unknown:
            raise ValueError(f"unknown stage {unknown[0]!r}; stages are base, interp (interpolation), vsr")
        if not stages:
            raise ValueError("no stages given")
        ordered = [stage for stage in STAGE_ORDER if stage in stages]
        if ordered != stages or len(set(stages)) != len(stages):
            raise ValueError(f"stages must be distinct and in the order base, interp, vsr, got {','.join(value)}")
        return ordered

    @model_validator(mode="after")
    def _mode_fits_stages(self) -> GenerationSettings:
        if self.mode == "image" and self.stages != ["base"]:
            raise ValueError("mode image runs the base stage only (--stages base)")
        if self.mode in ("image", "long") and "base" not in self.stages:
            raise ValueError(f"mode {self.mode} starts from text: its stages begin with base")
        return self

    @property
    def frames(self) -> int:
        """Frames the base (or long-video) stage makes."""
        return 1 if self.mode == "image" else self.num_frames

    @property
    def starts_from_text(self) -> bool:
        return self.stages[0] == "base"

    def output_fps(self) -> float:
        if self.fps is not None:
            return self.fps
        return INTERPOLATED_FPS if "interpolation" in self.stages else BASE_FPS
