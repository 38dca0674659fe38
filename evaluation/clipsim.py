"""CLIPSIM (the MSR-VTT protocol, as the LaVie paper runs it): text-video similarity of captioned videos.

For each video, every frame (or ``max_frames`` of them, evenly spaced) goes through open_clip's
own eval transform (resize the short side, bicubic; centre crop; normalise) and the image encoder;
the caption through the tokenizer (77 tokens, truncated) and the text encoder. A frame's score is
the cosine similarity of the two L2-normalised embeddings; a video's score the mean over its
frames; CLIPSIM the mean over videos, reported as a raw cosine (the paper's 0.2949), not × 100.
The paper uses ViT-B/32 with OpenAI's weights: ``--clip-model ViT-B-32`` and that checkpoint.

Weights are local files (an open_clip checkpoint as ``.safetensors`` or a torch file read with
``weights_only=True``); the architecture is an open_clip model name or a model-config JSON, as
in curation's scorer. Work layout under ``out``: ``work/clipsim-<run>/<item>.npy`` (the
per-frame similarities of one video), then ``result.json`` and ``report.html``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from evaluation.features import ItemError, PoolOptions, ProgressCallback, connect_once, extract, failure_line
from evaluation.preprocess import clip_pixels, evenly_spaced
from evaluation.report import CLIPSIM_PAPER, Sample, sample_frames, versions, write_outputs
from evaluation.sets import VideoSet, attach_captions, open_set
from lavie.core.config import StrictModel
from lavie.core.errors import UserError
from lavie.core.storage import join
from lavie.core.weights import file_sha256, load_open_clip

IMAGE_CHUNK = 64  # frames per image-encoder call


class ClipsimProtocol(StrictModel):
    max_frames: int | None = Field(None, ge=1)  # None: every frame of each video

    def describe(self) -> dict[str, Any]:
        frames = "every frame" if self.max_frames is None else f"{self.max_frames} evenly spaced frames"
        return {
            **self.model_dump(),
            "frames": f"{frames} of each video (or clip)",
            "image_transform": "open_clip eval transform: resize short side (bicubic), centre crop, normalise",
            "text": "open_clip tokenizer (77 tokens, truncated)",
            "score": "cosine of L2-normalised embeddings per frame, mean over frames, then mean over videos (raw cosine)",
        }


@dataclass
class LoadedClip:
    model: Any
    tokenizer: Any
    transform: Any
    name: str
    device: str = "cpu"

    @torch.inference_mode()
    def frame_similarities(self, frames: list[np.ndarray], captions: list[str]) -> list[np.ndarray]:
        """Per-frame cosine similarities of each video (uint8 ``(T, H, W, 3)``) with its caption."""
        pixels = torch.cat([clip_pixels(list(video), self.transform) for video in frames])
        images = torch.cat([
            self.model.encode_image(pixels[i : i + IMAGE_CHUNK].to(self.device)).float()
            for i in range(0, len(pixels), IMAGE_CHUNK)
        ])  # fmt: skip
        images = F.normalize(images, dim=-1)
        texts = F.normalize(self.model.encode_text(self.tokenizer(captions).to(self.device)).float(), dim=-1)
        scores, first = [], 0
        for video, text in zip(frames, texts):
            scores.append((images[first : first + len(video)] @ text).double().cpu().numpy())
            first += len(video)
        return scores


def load_clip(clip_model: str, checkpoint: str | Path, device: str = "cpu") -> LoadedClip:
    """An open_clip model with local weights, its tokenizer and eval transform; one-line errors."""
    import open_clip

    model, name = load_open_clip(clip_model, checkpoint)
    cfg = open_clip.get_model_preprocess_cfg(model)
    transform = open_clip.image_transform(
        cfg["size"], is_train=False, mean=cfg["mean"], std=cfg["std"], resize_mode=cfg["resize_mode"],
        interpolation=cfg["interpolation"],
    )  # fmt: skip
    return LoadedClip(model.to(device), open_clip.get_tokenizer(name), transform, name, device)


@dataclass(frozen=True)
class ClipFrameSimilarity:
    """The work of one item: its frames' similarities with its caption."""

    clip_model: str
    checkpoint: str
    max_frames: int | None

    def frame_indices(self, start: int, end: int) -> list[int]:
        if end <= start:
            raise ItemError("no frames")
        return evenly_spaced(start, end, self.max_frames)

    def load(self, device: str) -> LoadedClip:
        return load_clip(self.clip_model, self.checkpoint, device)

    def compute(self, model: LoadedClip, frames: list[np.ndarray], items: list[dict[str, Any]]) -> list[np.ndarray]:
        return model.frame_similarities(frames, [item["caption"] for item in items])


def compute_clipsim(
    videos: str | VideoSet,
    captions: str | None,
    *,
    clip_model: str,
    clip_checkpoint: str,
    out: str,
    protocol: ClipsimProtocol | None = None,
    pool: PoolOptions | None = None,
    storage_options: Mapping[str, Any] | None = None,
    connect: Callable[[], None] | None = None,
    on_progress: ProgressCallback | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """CLIPSIM of ``videos`` (a folder or manifest, or an opened set) with their captions (a
    caption file or manifest; None: the set's own ``caption`` column); writes ``out/result.json``
    and ``out/report.html`` and returns the result. ``connect`` joins the cluster when there is
    work for it; without it, Ray must already be connected. ``extra``: more entries for the
    result (a benchmark's generation record)."""
    started = time.perf_counter()
    protocol = protocol or ClipsimProtocol()
    video_set = videos if isinstance(videos, VideoSet) else open_set(videos, storage_options)
    if captions is not None:
        video_set = attach_captions(video_set, captions, storage_options)
    uncaptioned = [item.label for item in video_set.items if not item.caption]
    if uncaptioned:
        raise UserError(f"{video_set.uri}: {len(uncaptioned)} video(s) have no caption, e.g. {uncaptioned[0]}; give CAPTIONS")
    model = load_clip(clip_model, clip_checkpoint)  # a missing or foreign checkpoint fails here
    identity = {
        "model": clip_model,
        "architecture": model.name,
        "config_sha256": file_sha256(clip_model) if clip_model.endswith(".json") else None,
        "checkpoint": str(clip_checkpoint),
        "sha256": file_sha256(clip_checkpoint),
    }
    run = hashlib.sha256(repr((protocol.model_dump(), identity["config_sha256"], model.name, identity["sha256"])).encode())
    work = join(out, "work", f"clipsim-{run.hexdigest()[:16]}")
    spec = ClipFrameSimilarity(clip_model, str(clip_checkpoint), protocol.max_frames)
    result = extract(video_set.items, spec, work, ensure_ray=connect_once(connect, "CLIPSIM"), pool=pool,
                     storage_options=storage_options, on_progress=on_progress)  # fmt: skip
    if result.failed:
        raise UserError(failure_line(video_set.uri, result.failed, len(video_set)))
    per_video = np.array([result.values[item.key].mean() for item in video_set.items])
    record = {
        "metric": "clipsim",
        "value": float(per_video.mean()),
        "per_video": {"min": float(per_video.min()), "max": float(per_video.max()), "std": float(per_video.std())},
        "sets": {"videos": {"uri": video_set.uri, "layout": video_set.layout, "used": len(video_set),
                            "captions": captions, "computed": result.computed, "reused": result.reused}},
        "protocol": protocol.describe(),
        "clip": identity,
        "paper": CLIPSIM_PAPER,
        "versions": versions(),
        "seconds": round(time.perf_counter() - started, 3),
        **(extra or {}),
    }  # fmt: skip
    samples = [
        Sample("video", item.label, sample_frames(item, None, storage_options), f"{item.caption} (CLIPSIM {score:.4f})")
        for item, score in zip(video_set.items[:6], per_video)
    ]
    write_outputs(record, samples, out, storage_options)
    return record
