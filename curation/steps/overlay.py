"""Overlaid text and watermarks: ``overlay_score``, the highest probability of the overlay label
over the clip's sampled frames, from a local image classifier in a Ray actor pool (a GPU per actor
when the cluster has them); clips at or above ``threshold`` are rejected."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curation.config import OverlayConfig
from curation.overlay import OverlayClassifier, check_overlay_model
from curation.rows import FRAMES, Row
from curation.steps.base import Reject, StepContext, model_device
from curation.steps.frames import frames_from_bytes


def check_overlay(config: OverlayConfig) -> None:
    """On the driver, before any work: the folder is an image classifier with the label."""
    check_overlay_model(config.model, config.label)


class ScoreOverlay:
    def __init__(self, config: OverlayConfig, context: StepContext) -> None:
        self.frame_count = len(context.frame_positions)
        self.classifier = OverlayClassifier(config.model, config.label, device=model_device())

    def __call__(self, clips: pa.Table) -> pa.Table:
        frames = np.concatenate([frames_from_bytes(data, self.frame_count) for data in clips.column(FRAMES).to_pylist()])
        per_frame = self.classifier.probabilities(frames).reshape(clips.num_rows, self.frame_count)
        return pa.table({"overlay_score": pa.array(per_frame.max(axis=1), pa.float32())})


def filter_overlay(row: Row, config: OverlayConfig, context: StepContext) -> None:
    score = row["overlay_score"]
    if score >= config.threshold:
        raise Reject("overlay", f"overlay {score:.3f} >= {config.threshold} (label {config.label!r})")
