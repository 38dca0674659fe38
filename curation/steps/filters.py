"""The paper's clip filters: length in frames, caption words, and frame height (section 5.1)."""

from __future__ import annotations

from curation.config import FilterConfig
from curation.rows import Row, count_words
from curation.steps.base import Reject, StepContext


def filter_min_frames(row: Row, config: FilterConfig, context: StepContext) -> None:
    if row["num_frames"] < config.min_frames:
        raise Reject("too_short", f"{row['num_frames']} frames < {config.min_frames}")


def filter_caption(row: Row, config: FilterConfig, context: StepContext) -> None:
    """Drop missing, empty and URL-only captions and those under the word minimum."""
    caption = row["caption"]
    words = count_words(caption)
    row["caption_words"] = words
    if caption is None:
        raise Reject("missing_caption", "no caption in the metadata or from the captioner")
    if not caption.strip():
        raise Reject("empty_caption", "the caption is empty")
    if words == 0:
        raise Reject("url_only_caption", f"caption holds only URLs: {caption[:80]!r}")
    if words < config.min_caption_words:
        raise Reject("too_few_words", f"{words} words < {config.min_caption_words}: {caption[:80]!r}")


def filter_min_height(row: Row, config: FilterConfig, context: StepContext) -> None:
    if row["height"] < config.min_height:
        raise Reject("too_small", f"height {row['height']} < {config.min_height}")
