"""Captions written by a local image-to-text model from each clip's middle sampled frame, in a
Ray actor pool: in place of the metadata's (``mode: replace``) or where it has none."""

from __future__ import annotations

import pyarrow as pa

from curation.captioning import TransformersCaptioner
from curation.config import CaptionerConfig
from curation.rows import FRAMES, count_words
from curation.steps.base import StepContext, model_device
from curation.steps.frames import frames_from_bytes


class CaptionClips:
    def __init__(self, config: CaptionerConfig, context: StepContext) -> None:
        self.config = config
        self.frame_count = len(context.frame_positions)
        self.captioner = TransformersCaptioner(config.model, max_new_tokens=config.max_new_tokens, device=model_device())

    def __call__(self, clips: pa.Table) -> pa.Table:
        frames = clips.column(FRAMES).to_pylist()
        captions = clips.column("caption").to_pylist()
        todo = [i for i, caption in enumerate(captions) if self.config.mode == "replace" or not (caption or "").strip()]
        if todo:
            middle = self.frame_count // 2  # the clip's middle sampled frame
            images = [frames_from_bytes(frames[i], self.frame_count)[middle] for i in todo]
            for i, text in zip(todo, self.captioner.caption(images)):
                captions[i] = text
        return pa.table({
            "caption": pa.array(captions, pa.string()),
            "caption_words": pa.array([count_words(c) for c in captions], pa.int32()),
        })  # fmt: skip
