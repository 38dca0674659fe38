"""The paper's clip filters: length in frames, caption words, and frame height.

Each filter marks failing rows as rejected (with the threshold in the detail) and passes every
other row through, so the pipeline is a plain chain of ``map`` steps.
"""

from __future__ import annotations

from curation.config import FilterConfig
from curation.rows import Row, count_words, is_rejected, reject


def filter_min_frames(row: Row, config: FilterConfig) -> Row:
    if not is_rejected(row) and row["num_frames"] < config.min_frames:
        reject(row, "min_frames", "too_short", f"{row['num_frames']} frames < {config.min_frames}")
    return row


def filter_caption(row: Row, config: FilterConfig) -> Row:
    """Drop missing, empty and URL-only captions and those under the word minimum."""
    if is_rejected(row):
        return row
    caption = row["caption"]
    words = count_words(caption)
    row["caption_words"] = words
    if caption is None:
        reject(row, "caption", "missing_caption", "no caption in the metadata or from the captioner")
    elif not caption.strip():
        reject(row, "caption", "empty_caption", "the caption is empty")
    elif words == 0:
        reject(row, "caption", "url_only_caption", f"caption holds only URLs: {caption[:80]!r}")
    elif words < config.min_caption_words:
        reject(row, "caption", "too_few_words", f"{words} words < {config.min_caption_words}: {caption[:80]!r}")
    return row


def filter_min_height(row: Row, config: FilterConfig) -> Row:
    if not is_rejected(row) and row["height"] < config.min_height:
        reject(row, "resolution", "too_small", f"height {row['height']} < {config.min_height}")
    return row
