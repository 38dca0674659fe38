"""One HTML page showing every video of a batch with its prompt, seed and settings.

The page is static and self-contained beside the videos (relative links), so it can be opened
from disk, served by any web server, or copied with the folder.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pyarrow.parquet as pq

GALLERY = "index.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #111; color: #eee; }
h1 { font-size: 1.3rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1rem; }
figure { margin: 0; background: #1d1d1d; padding: .6rem; border-radius: 6px; }
video, img { width: 100%; image-rendering: pixelated; background: #000; }
figcaption { font-size: .85rem; margin-top: .4rem; }
.prompt { font-weight: 600; }
details { color: #aaa; font-size: .75rem; }
pre { white-space: pre-wrap; }
.failed { color: #f77; }
"""


def write_gallery(out_dir: str | Path, title: str = "LaVie generations") -> Path:
    """``out_dir/index.html`` for ``out_dir/manifest.parquet`` (see :mod:`cascade.batch`)."""
    out = Path(out_dir)
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    cards = [_card(row) for row in rows]
    ok = sum(row["status"] == "ok" for row in rows)
    page = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{ok} of {len(rows)} prompts generated.</p>"
        f"<div class=\"grid\">{''.join(cards)}</div></body></html>\n"
    )
    path = out / GALLERY
    path.write_text(page)
    return path


def _card(row: dict) -> str:
    prompt = html.escape(row["prompt"])
    settings = html.escape(json.dumps(json.loads(row["settings"]), indent=1))
    if row["status"] != "ok":
        media = f"<p class=\"failed\">failed: {html.escape(row['error'] or '')}</p>"
    elif row["path"].endswith(".png"):
        media = f"<img src=\"{html.escape(row['path'])}\" alt=\"{prompt}\">"
    else:
        media = f"<video src=\"{html.escape(row['path'])}\" controls muted loop playsinline preload=\"auto\"></video>"
    size = f"{row['num_frames']} frames, {row['width']}×{row['height']}, {row['fps']:g} fps" if row["status"] == "ok" else ""
    return (
        f"<figure>{media}<figcaption><div class=\"prompt\">{prompt}</div>"
        f"<div>seed {row['seed']} {size}</div>"
        f"<details><summary>settings</summary><pre>{settings}</pre></details></figcaption></figure>"
    )
