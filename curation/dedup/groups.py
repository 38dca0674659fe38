"""Near-duplicate groups inside one cluster, and which clip of each group stays.

Two clips are linked when the cosine similarity of their embeddings is at or above the threshold;
a group is a connected set of links. In each group the kept clip is the one with the highest
aesthetic score, then the longest, then the first ``clip_id`` (a missing score or duration ranks
last), so the same embeddings always give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: Rows of a block compared with the whole cluster at once (the block's similarities are
#: ``BLOCK_ROWS × cluster rows`` floats).
BLOCK_ROWS = 2048


@dataclass(frozen=True)
class Duplicates:
    """Rows (indices into the cluster) to drop, the row kept in each one's place, and the cosine
    similarity between the two."""

    rows: np.ndarray
    kept: np.ndarray
    similarity: np.ndarray


def linked_pairs(vectors: torch.Tensor, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of unit ``vectors`` with cosine similarity ≥ ``threshold``."""
    firsts, seconds = [], []
    for start in range(0, len(vectors), BLOCK_ROWS):
        similarity = vectors[start : start + BLOCK_ROWS] @ vectors.T
        i, j = torch.nonzero(similarity >= threshold, as_tuple=True)
        i = i + start
        upper = i < j
        firsts.append(i[upper].cpu().numpy())
        seconds.append(j[upper].cpu().numpy())
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(firsts), np.concatenate(seconds)


def keeper_order(clip_ids: list[str], aesthetic: np.ndarray, duration: np.ndarray) -> np.ndarray:
    """Each row's rank (0 first) by the keep rule: aesthetic score, then duration, both highest
    first with missing values last, then ``clip_id``."""
    by_id = np.argsort(np.asarray(clip_ids, dtype=object), kind="stable")
    id_rank = np.empty(len(clip_ids), np.int64)
    id_rank[by_id] = np.arange(len(clip_ids))
    aesthetic = np.where(np.isnan(aesthetic), -np.inf, aesthetic)
    duration = np.where(np.isnan(duration), -np.inf, duration)
    order = np.lexsort((id_rank, -duration, -aesthetic))
    rank = np.empty(len(clip_ids), np.int64)
    rank[order] = np.arange(len(clip_ids))
    return rank


def near_duplicates(
    vectors: torch.Tensor, clip_ids: list[str], aesthetic: np.ndarray, duration: np.ndarray, threshold: float
) -> Duplicates:
    """The duplicates among one cluster's rows (unit vectors, float32)."""
    n = len(clip_ids)
    first, second = linked_pairs(vectors, threshold)
    if not len(first):
        empty = np.zeros(0, np.int64)
        return Duplicates(empty, empty, np.zeros(0, np.float32))
    graph = coo_matrix((np.ones(len(first), np.int8), (first, second)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    rank = keeper_order(clip_ids, aesthetic, duration)
    # The kept row of each group: the one of lowest rank.
    best = np.full(group.max() + 1, n, np.int64)
    np.minimum.at(best, group, rank)
    row_of_rank = np.argsort(rank)
    kept = row_of_rank[best[group]]
    rows = np.nonzero(kept != np.arange(n))[0]
    similarity = (vectors[rows] * vectors[kept[rows]]).sum(dim=1).cpu().numpy()
    return Duplicates(rows, kept[rows], similarity.astype(np.float32))
