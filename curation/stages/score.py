"""The model stages, as Ray Data actor-pool callables: each actor loads its model once.

``ScoreClips`` fills ``aesthetic_score`` and ``clip_score``; ``CaptionClips`` writes captions with a
``Captioner``. Both take batches in Ray Data's numpy format and use a GPU when the actor has one.
"""

from __future__ import annotations

import numpy as np
import torch

from curation.captioning import TransformersCaptioner
from curation.config import CaptionerConfig, ScoringConfig
from curation.rows import FRAMES, count_words
from curation.scoring import ClipScorer
from curation.stages.frames import frames_from_bytes


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _alive(batch: dict[str, np.ndarray]) -> list[int]:
    """Rows still kept, i.e. those that carry frames."""
    return [i for i, data in enumerate(batch[FRAMES]) if len(data)]


class ScoreClips:
    def __init__(self, config: ScoringConfig) -> None:
        self.frame_count = len(config.frame_positions)
        self.scorer = ClipScorer(config.clip_model, config.clip_checkpoint, config.aesthetic_mlp, device=_device())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        aesthetic = np.full(len(batch[FRAMES]), np.nan, dtype=np.float32)
        similarity = np.full(len(batch[FRAMES]), np.nan, dtype=np.float32)
        alive = _alive(batch)
        if alive:
            frames = torch.from_numpy(
                np.stack([frames_from_bytes(batch[FRAMES][i], self.frame_count) for i in alive])
            )
            captions = [batch["caption"][i] for i in alive]
            scores, sims = self.scorer.score(frames, captions)
            aesthetic[alive] = scores.numpy()
            similarity[alive] = sims.numpy()
        batch["aesthetic_score"] = aesthetic
        batch["clip_score"] = similarity
        return batch


class CaptionClips:
    def __init__(self, config: CaptionerConfig, frame_count: int) -> None:
        self.config = config
        self.frame_count = frame_count
        self.captioner = TransformersCaptioner(config.model, max_new_tokens=config.max_new_tokens, device=_device())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        captions = list(batch["caption"])
        todo = [
            i for i in _alive(batch) if self.config.mode == "replace" or not (captions[i] or "").strip()
        ]
        if todo:
            middle = self.frame_count // 2  # the clip's middle sampled frame
            images = [frames_from_bytes(batch[FRAMES][i], self.frame_count)[middle] for i in todo]
            for i, text in zip(todo, self.captioner.caption(images)):
                captions[i] = text
        batch["caption"] = np.array(captions, dtype=object)
        batch["caption_words"] = np.array([count_words(c) for c in captions], dtype=np.int64)
        return batch
