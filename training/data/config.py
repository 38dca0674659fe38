"""Configuration of the joint video-image data stream (pydantic v2, unknown keys rejected).

A YAML ``data:`` section maps one-to-one onto :class:`DataConfig`::

    data:
      seed: 0
      num_frames: 16
      target_fps: 8          # or frame_stride: 3 (not both; neither means stride 1)
      height: 320
      width: 512
      images_per_sample: 4
      sources:
        - {name: webvid, kind: video, manifest: s3://bucket/webvid, schedule: [[0, 1.0]]}
        - {name: vimeo25m, kind: video, manifest: /data/vimeo25m,
           schedule: [[0, 0.0], [20000, 0.0], [40000, 1.0]]}
        - {name: laion, kind: image, manifest: /data/laion.parquet, schedule: [[0, 1.0]]}

Images as clips (the VSR model): with ``image_clips`` set, image sources supply clips instead of
the M extra images (``images_per_sample: 0``), each image seen through a simulated hand-held
camera (:mod:`training.data.camera`); ``min_image_side`` drops images whose shorter side is
smaller (the paper keeps images of at least 1024 pixels)::

    data:
      images_per_sample: 0
      image_clips: {max_shift: 16, smoothness: 0.8, jitter: 1.5}
      min_image_side: 1024
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from lavie.core.config import StrictModel, read_mapping, validate
from training.data.camera import CameraMotion

Knot = tuple[int, float]


class SourceConfig(StrictModel):
    """One manifest and its sampling weight over training steps."""

    name: str = Field(min_length=1)
    kind: Literal["video", "image"]
    manifest: str = Field(min_length=1)
    # (step, weight) knots, weight interpolated linearly between knots and held constant before
    # the first knot and after the last one.
    schedule: list[Knot] = Field(min_length=1)

    @field_validator("schedule")
    @classmethod
    def _knots_are_ordered(cls, knots: list[Knot]) -> list[Knot]:
        steps = [step for step, _ in knots]
        if any(step < 0 for step in steps):
            raise ValueError("knot steps must be >= 0")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"knot steps must be strictly increasing, got {steps}")
        if any(weight < 0 for _, weight in knots):
            raise ValueError("weights must be >= 0")
        return knots

    def weight_at(self, step: int) -> float:
        """Sampling weight at ``step`` (piecewise linear through the knots)."""
        steps, weights = zip(*self.schedule)
        return float(np.interp(step, steps, weights))


class DataConfig(StrictModel):
    """Joint image-video training data: T video frames plus M images per sample (paper: 16 + 4)."""

    sources: list[SourceConfig] = Field(min_length=1)
    num_frames: int = Field(16, ge=1)
    frame_stride: int | None = Field(None, ge=1)
    target_fps: float | None = Field(None, gt=0)
    height: int = Field(320, ge=1)
    width: int = Field(512, ge=1)
    images_per_sample: int = Field(4, ge=0)
    # Where a clip's frame window starts: anywhere in the clip (None), or at one of this many
    # evenly spaced positions, which makes the windows finite so their latents can be precomputed
    # (`lavie train --precompute-latents`).
    windows_per_clip: int | None = Field(None, ge=1)
    # Image sources supply clips, filmed by this simulated hand-held camera (module docstring).
    image_clips: CameraMotion | None = None
    # Images (extra images or image clips) whose shorter side is below this are skipped (too_small).
    min_image_side: int | None = Field(None, ge=1)
    # Carried for the trainer, which replaces captions by "" with this probability.
    caption_dropout: float = Field(0.1, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0)
    # Rows shuffled together (whole row groups, at least one): more mixes better but costs
    # memory in every loader process, about this many rows of the projected columns, twice.
    shuffle_rows: int = Field(16384, ge=1)
    # ffmpeg threads per decode; parallelism normally comes from DataLoader workers.
    decode_threads: int = Field(1, ge=0)
    # A sample whose clip (or image) cannot be used is replaced by another row of the same
    # source; this many failures in a row mean the source itself is broken, which is fatal.
    max_attempts: int = Field(32, ge=1)
    # Passed to fsspec for remote manifests and media (e.g. {"endpoint_url": ..., "anon": true}).
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.frame_stride is not None and self.target_fps is not None:
            raise ValueError("set frame_stride or target_fps, not both")
        if self.frame_stride is None and self.target_fps is None:
            self.frame_stride = 1
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique, repeated: {', '.join(duplicates)}")
        if self.image_clips is not None and self.images_per_sample > 0:
            raise ValueError("with image_clips, images feed clips: set images_per_sample to 0")
        if self.images_per_sample > 0 and not self.image_sources:
            raise ValueError(
                f"images_per_sample is {self.images_per_sample} but no source has kind 'image'"
            )
        return self

    def window_offsets(self) -> list[float] | None:
        """The window start positions, as fractions of a clip's slack; None when continuous."""
        if self.windows_per_clip is None:
            return None
        return [(k + 0.5) / self.windows_per_clip for k in range(self.windows_per_clip)]

    @property
    def video_sources(self) -> list[SourceConfig]:
        return [s for s in self.sources if s.kind == "video"]

    @property
    def image_sources(self) -> list[SourceConfig]:
        return [s for s in self.sources if s.kind == "image"]

    @property
    def clip_sources(self) -> list[SourceConfig]:
        """The sources a sample's clip comes from: videos, and images when ``image_clips`` is set."""
        return self.video_sources + (self.image_sources if self.image_clips is not None else [])


def parse_data_config(data: Mapping[str, Any] | str | Path) -> DataConfig:
    """Build a :class:`DataConfig` from a mapping or a YAML file (its top level, or its ``data:``).

    Raises :class:`UserError` with a single line naming the offending key.
    """
    if isinstance(data, (str, Path)):
        loaded = read_mapping(data, f"data config {data}")
        data = loaded.get("data", loaded)
    return validate(DataConfig, data, "data config", root="data")
