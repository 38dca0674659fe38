"""The row that flows through the curation pipeline.

Every row has the clip manifest's columns plus three ``reject_*`` fields (null while the row is
kept) and a few private fields (``_metadata``, ``_frames``, ``_motion``, ``_embedding``,
``_seconds_*``) that the steps and the shard's writer use. A step never drops a row: the executor
marks it rejected, and later steps pass rejected rows through untouched, so every input is accounted for.
"""

from __future__ import annotations

import re
from typing import Any

from lavie.core.manifest import CLIP_COLUMNS

Row = dict[str, Any]

METADATA = "_metadata"  # the video's metadata record, JSON text
FRAMES = "_frames"  # sampled RGB frames for the model steps (bytes; see curation.steps.frames)
EMBEDDING = "_embedding"  # the clip's CLIP image embedding, float16 bytes (curation.embeddings)
MOTION = "_motion"  # a video's sampled motion-vector values, for its clips' motion step
SECONDS_PREFIX = "_seconds_"

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def new_row(**values: Any) -> Row:
    row: Row = dict.fromkeys(CLIP_COLUMNS)
    row.update(reject_stage=None, reject_reason=None, reject_detail=None)
    row.update(values)
    return row


def mark_rejected(row: Row, stage: str, reason: str, detail: str | None = None) -> Row:
    row.update(reject_stage=stage, reject_reason=reason, reject_detail=detail)
    return row


def is_rejected(row: Row) -> bool:
    return row.get("reject_stage") is not None


def add_seconds(row: Row, stage: str, seconds: float) -> Row:
    key = SECONDS_PREFIX + stage
    row[key] = (row.get(key) or 0.0) + seconds
    return row


def count_words(caption: str | None) -> int:
    """Words in a caption, URLs not counted (a URL-only caption has zero words)."""
    if not caption:
        return 0
    return len(_URL.sub(" ", caption).split())
