"""The model stages, as Ray Data actor-pool callables: each actor loads its model once.

``ScoreClips`` fills ``aesthetic_score`` and ``clip_score``; ``CaptionClips`` writes captions with a
``Captioner``. Both take pyarrow batches (nulls stay nulls, unlike numpy/pandas batches) and use a
GPU when the actor has one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from curation.captioning import TransformersCaptioner
from curation.config import CaptionerConfig, ScoringConfig
from curation.rows import FRAMES, count_words
from curation.scoring import ClipScorer
from curation.stages.frames import frames_from_bytes


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _alive(frames: list[bytes]) -> list[int]:
    """Rows still kept, i.e. those that carry frames."""
    return [i for i, data in enumerate(frames) if data]


def _set(batch: pa.Table, name: str, values: list, type_: pa.DataType) -> pa.Table:
    return batch.set_column(batch.schema.get_field_index(name), name, pa.array(values, type=type_))


class ScoreClips:
    def __init__(self, config: ScoringConfig) -> None:
        self.frame_count = len(config.frame_positions)
        self.scorer = ClipScorer(config.clip_model, config.clip_checkpoint, config.aesthetic_mlp, device=_device())

    def __call__(self, batch: pa.Table) -> pa.Table:
        frames = batch.column(FRAMES).to_pylist()
        aesthetic: list[float | None] = [None] * len(frames)
        similarity: list[float | None] = [None] * len(frames)
        alive = _alive(frames)
        if alive:
            pixels = torch.from_numpy(np.stack([frames_from_bytes(frames[i], self.frame_count) for i in alive]))
            captions = batch.column("caption").to_pylist()
            scores, sims = self.scorer.score(pixels, [captions[i] for i in alive])
            for i, score, sim in zip(alive, scores.tolist(), sims.tolist()):
                aesthetic[i] = score
                similarity[i] = None if sim != sim else sim  # NaN: the clip has no caption
        batch = _set(batch, "aesthetic_score", aesthetic, pa.float32())
        return _set(batch, "clip_score", similarity, pa.float32())


class CaptionClips:
    def __init__(self, config: CaptionerConfig, frame_count: int) -> None:
        self.config = config
        self.frame_count = frame_count
        self.captioner = TransformersCaptioner(config.model, max_new_tokens=config.max_new_tokens, device=_device())

    def __call__(self, batch: pa.Table) -> pa.Table:
        frames = batch.column(FRAMES).to_pylist()
        captions = batch.column("caption").to_pylist()
        todo = [i for i in _alive(frames) if self.config.mode == "replace" or not (captions[i] or "").strip()]
        if todo:
            middle = self.frame_count // 2  # the clip's middle sampled frame
            images = [frames_from_bytes(frames[i], self.frame_count)[middle] for i in todo]
            for i, text in zip(todo, self.captioner.caption(images)):
                captions[i] = text
        batch = _set(batch, "caption", captions, pa.string())
        return _set(batch, "caption_words", [count_words(c) for c in captions], pa.int64())
