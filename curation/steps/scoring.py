"""Aesthetic score and text-frame CLIP similarity of each clip, in a Ray actor pool.

``aesthetic_score`` is the LAION improved predictor over the CLIP image embeddings of the sampled
frames, averaged; ``clip_score`` the mean cosine similarity of the caption's and the frames' CLIP
embeddings (null for a clip without caption). The clip's image embedding (the normalised mean of
its frames') goes on to the shard's ``embeddings/`` part, for near-duplicate search
(:mod:`curation.embeddings`). A GPU is used when the actor has one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from curation.config import ScoringConfig
from curation.rows import EMBEDDING, FRAMES
from curation.scoring import ClipScorer
from curation.steps.base import StepContext, model_device
from curation.steps.frames import frames_from_bytes


class ScoreClips:
    def __init__(self, config: ScoringConfig, context: StepContext) -> None:
        self.frame_count = len(context.frame_positions)
        self.scorer = ClipScorer(config.clip_model, config.clip_checkpoint, config.aesthetic_mlp, device=model_device())

    def __call__(self, clips: pa.Table) -> pa.Table:
        frames = [frames_from_bytes(data, self.frame_count) for data in clips.column(FRAMES).to_pylist()]
        scores = self.scorer.score(torch.from_numpy(np.stack(frames)), clips.column("caption").to_pylist())
        similarity = [None if s != s else s for s in scores.similarity.tolist()]  # NaN: the clip has no caption
        embeddings = scores.embedding.to(torch.float16).numpy()
        return pa.table({
            "aesthetic_score": pa.array(scores.aesthetic.tolist(), pa.float32()),
            "clip_score": pa.array(similarity, pa.float32()),
            EMBEDDING: pa.array([row.tobytes() for row in embeddings], pa.binary()),
        })  # fmt: skip
