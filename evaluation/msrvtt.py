"""`lavie eval msrvtt`: the paper's zero-shot MSR-VTT CLIPSIM (Table 2: LaVie 0.2949).

1. The test captions: MSR-VTT's annotation JSON (``test_videodatainfo.json``: ``sentences`` with
   ``video_id`` and ``caption``, only ``split == "test"`` videos when ``videos`` lists splits), or a
   CSV/JSONL file with columns ``video`` and ``caption`` (several rows per video).
2. One caption per test video (2,990 in the paper), drawn at random with a generator seeded by
   ``seed`` and the video's id, so a video's draw does not depend on which others are in the file.
3. One base-model video per drawn caption at 16×320×512, seeds ``seed``, ``seed + 1``, … in video-id
   order; the draw is written to ``out/prompts.jsonl``.
4. CLIPSIM of the generated videos with their captions (:func:`evaluation.clipsim.compute_clipsim`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field

from evaluation.clipsim import ClipsimProtocol, compute_clipsim, load_clip
from evaluation.features import PoolOptions, connect_once
from evaluation.generation import GenerationOptions, check_cascade, generate_set
from evaluation.sets import read_captions
from lavie.core.config import StrictModel
from lavie.core.errors import UserError, first_line
from lavie.core.storage import atomic_write, join, readable

PAPER_VIDEOS = 2990
PROMPTS_FILE = "prompts.jsonl"


class MsrvttProtocol(StrictModel):
    seed: int = 0
    videos: int | None = Field(None, ge=1)  # the first N test videos by id (None: all of them)


def read_test_captions(uri: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Captions by video id, in file order (see the module docstring for the formats)."""
    if uri.endswith(".json"):
        rows = _annotation_rows(uri, storage_options)
    else:
        rows = read_captions(uri, storage_options)
    captions: dict[str, list[str]] = {}
    for number, (video, caption) in enumerate(rows, start=1):
        if not video or not caption or not str(caption).strip():
            raise UserError(f"{uri}: row {number} needs a video and a caption")
        captions.setdefault(str(video), []).append(str(caption).strip())
    if not captions:
        raise UserError(f"{uri}: no test captions")
    return captions


def _annotation_rows(uri: str, storage_options: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    fs, path = readable(uri, storage_options)
    try:
        with fs.open(path, "rb") as handle:
            data = json.loads(handle.read())
    except (ValueError, OSError) as exc:
        raise UserError(f"{uri}: not valid JSON ({first_line(exc)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise UserError(f"{uri}: not an MSR-VTT annotation file (no 'sentences' list)")
    test = {v.get("video_id") for v in data.get("videos", []) if v.get("split") == "test"}
    return [
        (s.get("video_id"), s.get("caption"))
        for s in data["sentences"]
        if not test or s.get("video_id") in test
    ]


def draw_captions(captions: Mapping[str, list[str]], seed: int) -> list[tuple[str, str]]:
    """(video id, caption): one caption per video, in video-id order (see the module docstring)."""
    return [(video, random.Random(f"{seed}:{video}").choice(captions[video])) for video in sorted(captions)]


def measure_msrvtt(
    captions: str,
    models: str,
    *,
    clip_model: str,
    clip_checkpoint: str,
    out: str,
    protocol: MsrvttProtocol | None = None,
    clipsim: ClipsimProtocol | None = None,
    generation: GenerationOptions | None = None,
    pool: PoolOptions | None = None,
    storage_options: Mapping[str, Any] | None = None,
    connect: Callable[[], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate one video per drawn test caption and measure their CLIPSIM; writes
    ``out/result.json``, ``out/report.html`` and ``out/prompts.jsonl`` (videos in ``out/generated``)."""
    protocol = protocol or MsrvttProtocol()
    generation = generation or GenerationOptions()
    check_cascade(models, generation)
    load_clip(clip_model, clip_checkpoint)  # a missing or foreign checkpoint fails now, not after the generation
    drawn = draw_captions(read_test_captions(captions, storage_options), protocol.seed)[: protocol.videos]
    lines = (json.dumps({"video": v, "caption": c, "seed": protocol.seed + i}) for i, (v, c) in enumerate(drawn))
    atomic_write(join(out, PROMPTS_FILE), ("\n".join(lines) + "\n").encode(), storage_options)
    ensure_ray = connect_once(connect, "msrvtt")
    prompts = [(caption, protocol.seed + i) for i, (_, caption) in enumerate(drawn)]
    videos, generated = generate_set(models, prompts, out, generation, ensure_ray, on_progress)
    benchmark = {
        "benchmark": "msrvtt",
        "videos": len(drawn),
        "paper_videos": PAPER_VIDEOS,
        "seed": protocol.seed,
        "captions": captions,
        "draw": "one caption per test video: random.Random(f'{seed}:{video_id}').choice(captions in file order)",
        "prompts_file": join(out, PROMPTS_FILE),
        "generation": generated,
    }
    return compute_clipsim(
        videos, None, clip_model=clip_model, clip_checkpoint=clip_checkpoint, out=out, protocol=clipsim, pool=pool,
        storage_options=storage_options, connect=ensure_ray, extra={"benchmark": benchmark},
        on_progress=(lambda done, total: on_progress("clipsim", done, total)) if on_progress else None,
    )  # fmt: skip
