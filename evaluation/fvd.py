"""FVD between a real and a generated video set (the TATS protocol, as the LaVie paper runs it).

Features are I3D's 400 Kinetics logits averaged over time (:mod:`evaluation.i3d`), of the first
16 frames of each video, cropped and resized to 224×224 by :mod:`evaluation.preprocess`
(generated frames: the 270/320 centre crop; real frames: the largest centred square). FVD is the
Fréchet distance of the two feature Gaussians (:mod:`evaluation.frechet`, float64, no ``sqrtm``).

Work layout under ``out``: ``work/fvd-<run>/{real,fake}/<item>.npy`` (one feature vector per
video, ``<run>`` a digest of the protocol and the checkpoint), then ``result.json`` and
``report.html``. The real set's statistics are cached across runs (:mod:`evaluation.cache`).

``compute_fvd`` is the API the `lavie eval` commands call; bad input is a one-line
:class:`~lavie.core.errors.UserError` before any cluster starts.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from evaluation.cache import cache_key, default_cache_folder, load_stats, save_stats
from evaluation.features import (
    FeatureSpec,
    ItemError,
    PoolOptions,
    ProgressCallback,
    connect_once,
    extract,
    failure_line,
)
from evaluation.frechet import FeatureStats, frechet_distance
from evaluation.i3d import I3D, NUM_CLASSES, load_i3d
from evaluation.preprocess import GENERATED_CROP, first_frames, fvd_rule, i3d_input
from evaluation.report import FVD_PAPER, Sample, sample_frames, versions, write_outputs
from evaluation.sets import VideoSet, open_set
from lavie.core.config import StrictModel
from lavie.core.errors import UserError
from lavie.core.storage import join

I3D_SIZE = 224  # the network's input size: its last pool is 7×7 at 224×224


class FvdProtocol(StrictModel):
    """Every choice that changes the number. Defaults: the LaVie paper's UCF-101 protocol."""

    num_frames: int = Field(16, ge=9)  # I3D's pools need at least 9 frames
    real_crop: float = Field(1.0, gt=0, le=1)  # centre square side / short side, real videos
    fake_crop: float = Field(GENERATED_CROP, gt=0, le=1)  # generated: 270/320 (270×270 of 320×512)
    samples: int | None = Field(None, ge=2)  # videos drawn from each set (seeded); None: all
    seed: int = 0

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """The protocol in full, for result.json and the report."""
        return {
            **self.model_dump(),
            "frames": f"the first {self.num_frames} consecutive frames of each video (or clip)",
            "real_rule": fvd_rule(self.real_crop, I3D_SIZE),
            "fake_rule": fvd_rule(self.fake_crop, I3D_SIZE),
            "input_range": "[-1, 1] (x / 127.5 - 1), (B, 3, T, 224, 224)",
            "features": f"I3D Kinetics-400 logits averaged over time ({NUM_CLASSES}-d)",
            "statistics": "mean and unbiased covariance (N - 1), float64",
            "distance": "Frechet: trace sqrt(S1 S2) from eigh of S1^1/2 S2 S1^1/2 (float64; eigenvalues under d*eps*max taken as 0)",
            "sampling": "all videos" if self.samples is None else f"{self.samples} videos per set, seed {self.seed}",
        }


@dataclass(frozen=True)
class I3DFeatures:
    """The FVD feature of one item: I3D over its first ``num_frames`` frames, cropped by ``crop``."""

    checkpoint: str
    num_frames: int
    crop: float

    def frame_indices(self, start: int, end: int) -> list[int]:
        indices = first_frames(start, end, self.num_frames)
        if indices is None:
            raise ItemError(f"{end - start} frames, FVD needs {self.num_frames}")
        return indices

    def load(self, device: str) -> I3D:
        return load_i3d(self.checkpoint, device)

    def compute(self, model: I3D, frames: list[np.ndarray], items: list[dict[str, Any]]) -> list[np.ndarray]:
        import torch

        batch = torch.stack([i3d_input(f, self.crop, I3D_SIZE) for f in frames])
        return list(model.features(batch).cpu().numpy())


def compute_fvd(
    real: str | VideoSet,
    fake: str | VideoSet,
    *,
    i3d: str,
    out: str,
    protocol: FvdProtocol | None = None,
    stats_cache: str | None = "default",
    pool: PoolOptions | None = None,
    storage_options: Mapping[str, Any] | None = None,
    connect: Callable[[], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """FVD of ``fake`` against ``real`` (folders or manifests, or opened sets); writes
    ``out/result.json`` and ``out/report.html`` and returns the result.

    ``stats_cache``: the folder of cached real-set statistics (``"default"``:
    :func:`~evaluation.cache.default_cache_folder`; None: no cache). ``connect`` joins the cluster
    when there is work for it; without it, Ray must already be connected. ``on_progress(set,
    done, total)`` follows the extraction. ``extra``: more entries for the result (a benchmark's
    generation record).
    """
    started = time.perf_counter()
    protocol = protocol or FvdProtocol()
    sets = {name: _open(value, storage_options).sample(protocol.samples, protocol.seed) for name, value in
            (("real", real), ("fake", fake))}  # fmt: skip
    for name, videos in sets.items():
        videos.require(2, f"FVD ({name} set)")
    model = load_i3d(i3d)  # a missing or foreign checkpoint fails here, before any work
    run = hashlib.sha256(f"{protocol.digest()}:{model.sha256}".encode()).hexdigest()[:16]
    work = join(out, "work", f"fvd-{run}")
    cache = default_cache_folder() if stats_cache == "default" else stats_cache
    ensure_ray = connect_once(connect, "FVD")
    described = protocol.describe()

    stats: dict[str, FeatureStats] = {}
    counts: dict[str, dict[str, Any]] = {}
    for name, crop in (("real", protocol.real_crop), ("fake", protocol.fake_crop)):
        videos = sets[name]
        entry: dict[str, Any] = {"uri": videos.uri, "layout": videos.layout, "used": len(videos),
                                 "fingerprint": videos.fingerprint()}  # fmt: skip
        key = cache_key(described, model.sha256, entry["fingerprint"]) if name == "real" and cache else None
        cached = load_stats(cache, key, storage_options) if key else None
        if cached is not None:
            stats[name] = cached
            entry.update(statistics="cache", stats_cache=join(cache, f"{key}.npz"), computed=0, reused=0)
        else:
            spec: FeatureSpec = I3DFeatures(str(i3d), protocol.num_frames, crop)
            progress: ProgressCallback | None = (lambda done, total, n=name: on_progress(n, done, total)) if on_progress else None
            result = extract(videos.items, spec, join(work, name), ensure_ray=ensure_ray, pool=pool,
                             storage_options=storage_options, on_progress=progress)  # fmt: skip
            if result.failed:
                raise UserError(failure_line(videos.uri, result.failed, len(videos)))
            stats[name] = FeatureStats.of(np.stack([result.values[item.key] for item in videos.items]))
            entry.update(statistics="computed", computed=result.computed, reused=result.reused)
            if key:
                entry["stats_cache"] = save_stats(cache, key, stats[name], storage_options)
        counts[name] = entry

    record = {
        "metric": "fvd",
        "value": frechet_distance(stats["real"], stats["fake"]),
        "sets": counts,
        "protocol": described,
        "i3d": {"path": str(i3d), "sha256": model.sha256, "format": model.format},
        "paper": FVD_PAPER,
        "versions": versions(),
        "seconds": round(time.perf_counter() - started, 3),
        **(extra or {}),
    }
    samples = [
        Sample(name, item.label, sample_frames(item, protocol.num_frames, storage_options, crop=crop, size=I3D_SIZE))
        for name, crop in (("real", protocol.real_crop), ("fake", protocol.fake_crop))
        for item in sets[name].items[:4]
    ]
    write_outputs(record, samples, out, storage_options)
    return record


def _open(value: str | VideoSet, storage_options: Mapping[str, Any] | None) -> VideoSet:
    return value if isinstance(value, VideoSet) else open_set(value, storage_options)
