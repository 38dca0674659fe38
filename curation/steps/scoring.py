"""Aesthetic score and text-frame CLIP similarity of each clip, in a Ray actor pool.

``aesthetic_score`` is the LAION improved predictor over the CLIP image embeddings of the sampled
frames, averaged; ``clip_score`` the mean cosine similarity of the caption's and the frames' CLIP
embeddings (null for a clip without caption). A GPU is used when the actor has one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from curation.config import ScoringConfig
from curation.rows import FRAMES
from curation.scoring import ClipScorer
from curation.steps.base import StepContext, model_device
from curation.steps.frames import frames_from_bytes


class ScoreClips:
    def __init__(self, config: ScoringConfig, context: StepContext) -> None:
        self.frame_count = len(context.frame_positions)
        self.scorer = ClipScorer(config.clip_model, config.clip_checkpoint, config.aesthetic_mlp, device=model_device())

    def __call__(self, clips: pa.Table) -> pa.Table:
        frames = [frames_from_bytes(data, self.frame_count) for data in clips.column(FRAMES).to_pylist()]
        scores, similarities = self.scorer.score(torch.from_numpy(np.stack(frames)), clips.column("caption").to_pylist())
        similarity = [None if s != s else s for s in similarities.tolist()]  # NaN: the clip has no caption
        return pa.table({
            "aesthetic_score": pa.array(scores.tolist(), pa.float32()),
            "clip_score": pa.array(similarity, pa.float32()),
        })  # fmt: skip
