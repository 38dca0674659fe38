"""One example clip as HTML: its preview (or a placeholder saying why there is none), caption,
scores, source and frame range, and for a reject its stage, reason and detail. The report page and
the clip index both draw clips with these functions, so they look and escape alike.

Every text taken from a manifest (captions, URIs, reasons, details) is escaped here.
"""

from __future__ import annotations

from html import escape
from typing import Any

CARD_CSS = """
.samples { display: flex; flex-wrap: wrap; gap: .6rem; margin: .3rem 0 .8rem; }
.sample { width: 180px; margin: 0; font-size: 12px; line-height: 1.3; }
.sample img.preview, .clip-index img.preview { max-width: 180px; max-height: 180px; display: block; background: #eee; }
.placeholder { width: 176px; min-height: 60px; padding: 2px; background: #f4f0f0; color: #933; font-size: 11px;
               border: 1px dashed #c99; overflow-wrap: anywhere; }
.sample .caption { margin: .2rem 0; overflow-wrap: anywhere; }
.sample .meta, .clip-index .meta { color: #666; overflow-wrap: anywhere; }
.sample .reject, .clip-index .reject { color: #a33; }
.group-title { font-weight: 600; margin: .6rem 0 0; }
"""


def number(value: Any, digits: int = 3) -> str:
    """A score or duration for display (floats rounded), an en dash for a missing value."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if value == value else "NaN"
    return escape(str(value))


def frame_range(row: dict[str, Any]) -> str:
    start, end = row.get("start_frame"), row.get("end_frame")
    return "whole input (no frame range)" if start is None or end is None else f"frames [{start}, {end})"


def preview(row: dict[str, Any]) -> str:
    """The preview image, or a placeholder with the reason it could not be made."""
    if row.get("preview"):
        return f'<img class="preview" src="{escape(row["preview"])}" alt="preview of {escape(frame_range(row))}">'
    why = row.get("preview_error") or "no preview made"
    return f'<div class="placeholder">no preview: {escape(why)}</div>'


def scores_text(row: dict[str, Any], score_names: list[str]) -> str:
    return " · ".join(f"{escape(name)} {number(row.get(name))}" for name in score_names if name in row)


def reject_text(row: dict[str, Any]) -> str:
    detail = f": {escape(row['detail'])}" if row.get("detail") else ""
    return f'<div class="reject">rejected at {escape(str(row.get("stage")))}, {escape(str(row.get("reason")))}{detail}</div>'


def caption_text(row: dict[str, Any]) -> str:
    caption = row.get("caption")
    return escape(caption) if caption else "<em>no caption</em>"


def card(row: dict[str, Any], score_names: list[str]) -> str:
    """A figure for one drawn clip, as the report shows it beside a chart."""
    parts = [f'<figure class="sample">{preview(row)}<figcaption>', f'<div class="caption">{caption_text(row)}</div>']
    scores = scores_text(row, score_names)
    if scores:
        parts.append(f'<div class="meta">{scores}</div>')
    if row.get("kind") == "reject":
        parts.append(reject_text(row))
    source = escape(row.get("source_uri") or "")
    parts.append(f'<div class="meta"><code>{source}</code> {escape(frame_range(row))}</div></figcaption></figure>')
    return "".join(parts)


def cards(rows: list[dict[str, Any]], score_names: list[str]) -> str:
    """A row of cards (an explicit note when the group drew nothing)."""
    if not rows:
        return '<p class="muted">no clips in this group</p>'
    return '<div class="samples">' + "".join(card(row, score_names) for row in rows) + "</div>"
