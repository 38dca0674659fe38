"""k-means for near-duplicate search, in torch (a GPU when the task has one).

The distributed parts run in Ray tasks, one per unit (:mod:`curation.dedup.parts`): each draws its
share of a sample or of a mini-batch and returns small arrays (a sample, or per-centroid sums and
counts); the driver combines them. Mini-batch k-means (Sculley, "Web-scale k-means clustering",
2010) moves each centroid towards the mean of the batch points assigned to it, with a learning
rate of one over the points it has received so far; here every task's batch points count in one
update per iteration. Embeddings are unit vectors, so the nearest centroid by Euclidean distance is
found as the largest dot product minus half the centroid's squared norm.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Rows of a block whose distances to every centroid are computed at once.
BLOCK_ROWS = 8192


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def nearest(vectors: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The index of each vector's nearest centroid (Euclidean), block by block."""
    half_norms = 0.5 * (centroids * centroids).sum(dim=1)
    labels = []
    for start in range(0, len(vectors), BLOCK_ROWS):
        block = vectors[start : start + BLOCK_ROWS]
        labels.append((block @ centroids.T - half_norms).argmax(dim=1))
    return torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=vectors.device)


def kmeans_plus_plus(vectors: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` initial centroids chosen from ``vectors`` by k-means++ (D² sampling)."""
    n = len(vectors)
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = [vectors[first]]
    distances = ((vectors - vectors[first]) ** 2).sum(dim=1)
    for _ in range(1, min(k, n)):
        weights = distances.double().cpu()
        if float(weights.sum()) <= 0:  # every point sits on a centroid already
            break
        chosen = int(torch.multinomial(weights, 1, generator=generator))
        centroids.append(vectors[chosen])
        distances = torch.minimum(distances, ((vectors - vectors[chosen]) ** 2).sum(dim=1))
    return torch.stack(centroids)


def partial_sums(vectors: torch.Tensor, centroids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per centroid: the sum (float64) and the number of ``vectors`` nearest to it."""
    labels = nearest(vectors, centroids)
    sums = torch.zeros(centroids.shape, dtype=torch.float64, device=vectors.device)
    sums.index_add_(0, labels, vectors.double())
    counts = torch.bincount(labels, minlength=len(centroids))
    return sums.cpu().numpy(), counts.cpu().numpy()


def minibatch_update(centroids: np.ndarray, seen: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
    """Sculley's per-centroid update, in place: ``c ← c + (Σx − m·c) / n`` where ``m`` batch
    points reached ``c`` and ``n`` is every point it has had, these included."""
    seen += counts
    moved = counts > 0
    rate = 1.0 / seen[moved][:, None]
    centroids[moved] += rate * (sums[moved] - counts[moved][:, None] * centroids[moved])


def local_kmeans(vectors: torch.Tensor, k: int, iterations: int, seed: int) -> torch.Tensor:
    """Labels of a plain (Lloyd) k-means of ``vectors`` that fit in one task."""
    generator = torch.Generator().manual_seed(seed)
    centroids = kmeans_plus_plus(vectors, k, generator)
    labels = nearest(vectors, centroids)
    for _ in range(iterations):
        sums = torch.zeros_like(centroids).index_add_(0, labels, vectors)
        counts = torch.bincount(labels, minlength=len(centroids)).to(vectors.dtype)[:, None]
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        new = nearest(vectors, centroids)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def cluster_count(rows: int, cluster_size: int) -> int:
    return max(1, math.ceil(rows / cluster_size))


def row_generator(seed: int, *salt: int) -> np.random.Generator:
    """The random stream of one task's draw: the same seed draws the same rows on any cluster."""
    return np.random.default_rng([seed, *salt])
