"""The real-set statistics cache: FVD's reference statistics computed once per set and network.

The reference side of FVD (UCF-101's 13,320 videos through I3D) is the same for every model
measured against it. Its mean and covariance are kept as ``<key>.npz`` in a cache folder (local
or fsspec), the key a digest of the protocol, the network's identity (the checkpoint's SHA-256 and
how it computes: lineage and batch-norm eps, :attr:`evaluation.networks.FeatureNetwork.identity`)
and the set's fingerprint (its files' URIs, ranges, sizes and modification times): any change to
one of them is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evaluation.frechet import FeatureStats
from lavie.core.storage import atomic_write, filesystem, join


def default_cache_folder() -> str:
    """``$XDG_CACHE_HOME/lavie/fvd-stats`` (``~/.cache/lavie/fvd-stats`` by default)."""
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lavie" / "fvd-stats")


def cache_key(protocol: Mapping[str, Any], network: str, fingerprint: str) -> str:
    """The cache entry of a set's statistics: ``network`` is the network's identity (not only its
    checkpoint's hash: the same file computed with another eps gives other statistics)."""
    text = json.dumps({"protocol": protocol, "network": network, "set": fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load_stats(folder: str, key: str, storage_options: Mapping[str, Any] | None = None) -> FeatureStats | None:
    """The cached statistics under ``key``, or None."""
    fs, path = filesystem(join(folder, f"{key}.npz"), storage_options)
    if not fs.isfile(path):
        return None
    with fs.open(path, "rb") as handle:
        return FeatureStats.from_npz(handle.read())


def save_stats(folder: str, key: str, stats: FeatureStats, storage_options: Mapping[str, Any] | None = None) -> str:
    uri = join(folder, f"{key}.npz")
    atomic_write(uri, stats.to_npz(), storage_options)
    return uri
