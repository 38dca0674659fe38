"""FVD between a real and a generated video set (the TATS protocol, as the LaVie paper runs it),
and its content-debiased variant.

Features are I3D's 400 Kinetics logits averaged over time (:mod:`evaluation.i3d`), of the first
16 frames of each video, cropped and resized to 224×224 by :mod:`evaluation.preprocess`
(generated frames: the 270/320 centre crop; real frames: the largest centred square). FVD is the
Fréchet distance of the two feature Gaussians (:mod:`evaluation.frechet`, float64, no ``sqrtm``).
The I3D computes as its checkpoint's lineage does (a ``i3d_pretrained_400.pt`` state dict with
batch-norm eps 1e-5, as VideoGPT, TATS and cd-fvd; the protocol's ``i3d_bn_eps`` overrides it).

The same sets can also be measured on VideoMAE-v2 features (:mod:`evaluation.videomae`, cd-fvd's
content-debiased FVD), from the same frames, crops and resize, scaled to [0, 1]. Each network
given is measured (``features`` picks among them); the headline value is the I3D FVD when there
is one (the number papers report), and ``result.json`` holds each.

Work layout under ``out``: ``work/fvd-<run>/{real,fake}/<item>.npy`` (one feature vector per
video, ``<run>`` a digest of the protocol, the checkpoint and how it computes), then
``result.json`` and ``report.html``. The real set's statistics are cached across runs
(:mod:`evaluation.cache`).

``compute_fvd`` is the API the `lavie eval` commands call; bad input is a one-line
:class:`~lavie.core.errors.UserError` before any cluster starts.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from evaluation.cache import cache_key, default_cache_folder, load_stats, save_stats
from evaluation.features import (
    ItemError,
    PoolOptions,
    ProgressCallback,
    connect_once,
    extract,
    failure_line,
)
from evaluation.frechet import FeatureStats, frechet_distance
from evaluation.i3d import NUM_CLASSES, load_i3d
from evaluation.networks import FeatureNetwork
from evaluation.preprocess import GENERATED_CROP, first_frames, fvd_rule, i3d_input, videomae_input
from evaluation.report import FVD_PAPER, Sample, sample_frames, versions, write_outputs
from evaluation.sets import VideoSet, open_set
from evaluation.videomae import load_videomae
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
    # The I3D's batch-norm eps; None: its lineage's (a pytorch-i3d state dict: 1e-5). 1e-3: the
    # TF-hub original's, to reproduce numbers of the TF code on purpose.
    i3d_bn_eps: float | None = Field(None, gt=0)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """The protocol in full, for result.json and the report."""
        return {
            **self.model_dump(),
            "frames": f"the first {self.num_frames} consecutive frames of each video (or clip)",
            "real_rule": fvd_rule(self.real_crop, I3D_SIZE),
            "fake_rule": fvd_rule(self.fake_crop, I3D_SIZE),
            "i3d_bn_eps": "the checkpoint's lineage" if self.i3d_bn_eps is None else self.i3d_bn_eps,
            "statistics": "mean and unbiased covariance (N - 1), float64",
            "distance": "Frechet: trace sqrt(S1 S2) from eigh of S1^1/2 S2 S1^1/2 (float64; eigenvalues under d*eps*max taken as 0)",
            "sampling": "all videos" if self.samples is None else f"{self.samples} videos per set, seed {self.seed}",
        }


@dataclass(frozen=True)
class Network:
    """A feature network FVD can use: how it is loaded, how frames become its input, in words."""

    title: str
    load: Callable[..., FeatureNetwork]
    prepare: Callable[[np.ndarray, float], Any]  # uint8 (T, H, W, 3) frames, crop → (3, T, 224, 224)
    input: str
    features: str


NETWORKS = {
    "i3d": Network("I3D", load_i3d, i3d_input, "[-1, 1] (x / 127.5 - 1), (B, 3, T, 224, 224)",
                   f"I3D Kinetics-400 logits averaged over time ({NUM_CLASSES}-d)"),
    "videomae": Network("VideoMAE-v2 (content-debiased)", load_videomae, videomae_input,
                        "[0, 1] (x / 255), (B, 3, T, 224, 224)",
                        "VideoMAE-v2 encoder: layer-normalised mean of the last block's tokens"),
}  # fmt: skip


@dataclass(frozen=True)
class NetworkFeatures:
    """The FVD feature of one item: the network over its first ``num_frames`` frames, cropped by ``crop``."""

    network: str  # a key of NETWORKS
    checkpoint: str
    num_frames: int
    crop: float
    i3d_bn_eps: float | None = None

    def frame_indices(self, start: int, end: int) -> list[int]:
        indices = first_frames(start, end, self.num_frames)
        if indices is None:
            raise ItemError(f"{end - start} frames, FVD needs {self.num_frames}")
        return indices

    def load(self, device: str) -> FeatureNetwork:
        return load_network(self.network, self.checkpoint, self.i3d_bn_eps, device)

    def compute(self, model: FeatureNetwork, frames: list[np.ndarray], items: list[dict[str, Any]]) -> list[np.ndarray]:
        import torch

        prepare = NETWORKS[self.network].prepare
        batch = torch.stack([prepare(f, self.crop) for f in frames])
        return list(model.features(batch).cpu().numpy())


def load_network(name: str, checkpoint: str, i3d_bn_eps: float | None = None, device: str = "cpu") -> FeatureNetwork:
    """The network ``name`` from ``checkpoint`` (the I3D with ``i3d_bn_eps`` when given)."""
    if name == "i3d":
        return load_i3d(checkpoint, device, i3d_bn_eps)
    return NETWORKS[name].load(checkpoint, device)


def choose_networks(i3d: str | None, videomae: str | None, features: Sequence[str] | None) -> dict[str, str]:
    """Network name → checkpoint: those ``features`` names (default: each network whose checkpoint
    is given), I3D first. One line when none is given or a named one has no checkpoint."""
    checkpoints = {"i3d": i3d, "videomae": videomae}
    names = list(features) if features else [name for name, path in checkpoints.items() if path]
    unknown = [name for name in names if name not in NETWORKS]
    if unknown:
        raise UserError(f"unknown FVD features '{unknown[0]}' (choose from {', '.join(NETWORKS)})")
    if not names:
        raise UserError("FVD needs a feature network: give an I3D checkpoint (--i3d) and/or a VideoMAE-v2 one (--videomae)")
    lacking = [name for name in names if not checkpoints[name]]
    if lacking:
        raise UserError(f"FVD features '{lacking[0]}' need a checkpoint (--{lacking[0]} CHECKPOINT)")
    return {name: str(checkpoints[name]) for name in NETWORKS if name in names}


def load_networks(
    i3d: str | None, videomae: str | None, features: Sequence[str] | None, protocol: FvdProtocol,
) -> dict[str, FeatureNetwork]:  # fmt: skip
    """Every chosen network, loaded once on the driver: a missing or foreign checkpoint fails here,
    before any work."""
    return {name: load_network(name, path, protocol.i3d_bn_eps) for name, path in choose_networks(i3d, videomae, features).items()}


def compute_fvd(
    real: str | VideoSet,
    fake: str | VideoSet,
    *,
    i3d: str | None = None,
    out: str,
    videomae: str | None = None,
    features: Sequence[str] | None = None,
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

    ``i3d``, ``videomae``: checkpoints of the feature networks; ``features``: which of them to
    measure with (``["i3d"]``, ``["videomae"]`` or both; default: each one given). The result's
    ``value`` is the I3D FVD when measured, else the VideoMAE one; ``fvd`` holds each.
    ``stats_cache``: the folder of cached real-set statistics (``"default"``:
    :func:`~evaluation.cache.default_cache_folder`; None: no cache). ``connect`` joins the cluster
    when there is work for it; without it, Ray must already be connected. ``on_progress(set,
    done, total)`` follows the extraction (``set`` is ``real``/``fake`` for the headline network,
    ``real (videomae)`` … for a second one). ``extra``: more entries for the result (a
    benchmark's generation record).
    """
    started = time.perf_counter()
    protocol = protocol or FvdProtocol()
    sets = {name: _open(value, storage_options).sample(protocol.samples, protocol.seed) for name, value in
            (("real", real), ("fake", fake))}  # fmt: skip
    for name, videos in sets.items():
        videos.require(2, f"FVD ({name} set)")
    # Loaded here to fail early and to know what they compute; freed before the actors load theirs
    # (VideoMAE-v2 ViT-g is 4 GB in float32).
    models = {name: (model.identity, model.describe()) for name, model in load_networks(i3d, videomae, features, protocol).items()}
    cache = default_cache_folder() if stats_cache == "default" else stats_cache
    ensure_ray = connect_once(connect, "FVD")
    described = protocol.describe()
    crops = {"real": protocol.real_crop, "fake": protocol.fake_crop}
    headline = next(iter(models))

    values: dict[str, float] = {}
    counts: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in sets}
    for network, (identity, model) in models.items():
        run = hashlib.sha256(f"{protocol.digest()}:{identity}".encode()).hexdigest()[:16]
        work = join(out, "work", f"fvd-{run}")
        stats: dict[str, FeatureStats] = {}
        for name, videos in sets.items():
            label = name if network == headline else f"{name} ({network})"
            progress: ProgressCallback | None = (lambda done, total, n=label: on_progress(n, done, total)) if on_progress else None
            stats[name], counts[name][network] = _set_statistics(
                videos, NetworkFeatures(network, model["path"], protocol.num_frames, crops[name], protocol.i3d_bn_eps),
                identity, join(work, name), cache if name == "real" else None, described, ensure_ray, pool,
                storage_options, progress,
            )  # fmt: skip
        values[network] = frechet_distance(stats["real"], stats["fake"])

    record = {
        "metric": "fvd",
        "value": values[headline],
        "features": headline,
        "fvd": values,
        "sets": {
            name: {"uri": videos.uri, "layout": videos.layout, "used": len(videos), "fingerprint": videos.fingerprint(),
                   **counts[name][headline], "networks": counts[name]}
            for name, videos in sets.items()
        },  # fmt: skip
        "protocol": described,
        **{network: {**model, "input": NETWORKS[network].input, "features": NETWORKS[network].features}
           for network, (_, model) in models.items()},  # fmt: skip
        "paper": FVD_PAPER,
        "versions": versions(),
        "seconds": round(time.perf_counter() - started, 3),
        **(extra or {}),
    }
    samples = [
        Sample(name, item.label, sample_frames(item, protocol.num_frames, storage_options, crop=crops[name], size=I3D_SIZE))
        for name in sets
        for item in sets[name].items[:4]
    ]
    write_outputs(record, samples, out, storage_options)
    return record


def _set_statistics(
    videos: VideoSet, spec: NetworkFeatures, identity: str, work: str, cache: str | None,
    described: Mapping[str, Any], ensure_ray: Callable[[], None], pool: PoolOptions | None,
    storage_options: Mapping[str, Any] | None, on_progress: ProgressCallback | None,
) -> tuple[FeatureStats, dict[str, Any]]:  # fmt: skip
    """One set's feature statistics through one network (``identity``: see
    :attr:`~evaluation.networks.FeatureNetwork.identity`), from ``cache`` when it holds them, and
    how they were obtained."""
    key = cache_key(described, identity, videos.fingerprint()) if cache else None
    cached = load_stats(cache, key, storage_options) if cache and key else None
    if cached is not None:
        return cached, {"statistics": "cache", "stats_cache": join(cache, f"{key}.npz"), "computed": 0, "reused": 0}  # type: ignore[arg-type]
    result = extract(videos.items, spec, work, ensure_ray=ensure_ray, pool=pool, storage_options=storage_options,
                     on_progress=on_progress)  # fmt: skip
    if result.failed:
        raise UserError(failure_line(videos.uri, result.failed, len(videos)))
    stats = FeatureStats.of(np.stack([result.values[item.key] for item in videos.items]))
    entry: dict[str, Any] = {"statistics": "computed", "computed": result.computed, "reused": result.reused}
    if cache and key:
        entry["stats_cache"] = save_stats(cache, key, stats, storage_options)
    return stats, entry


def _open(value: str | VideoSet, storage_options: Mapping[str, Any] | None) -> VideoSet:
    return value if isinstance(value, VideoSet) else open_set(value, storage_options)
