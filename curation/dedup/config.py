"""`lavie dedup` settings, validated on load like every config (unknown keys are errors)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from lavie.core import config as core_config


class DedupConfig(core_config.StrictModel):
    """Near-duplicate search settings.

    The threshold is the cosine similarity of two clips' CLIP image embeddings at or above which
    they are near-duplicates. Peers: NeMo Curator's documented example removes pairs within
    ``eps = 0.1`` (cosine ≥ 0.9); Open-Sora's CLIP deduplication uses 0.98. The default, 0.95,
    sits between: re-uploads and re-encodes of one shot score above it, different shots of one
    scene mostly below.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.95, gt=0, le=1, description="cosine similarity at or above which clips are duplicates")
    cluster_size: int = Field(
        10_000,
        ge=2,
        description="embeddings per k-means cluster on average (k = embeddings / cluster_size); a cluster "
        "is compared all-pairs inside one task, so this bounds a task's memory and time",
    )
    iterations: int = Field(20, ge=1, description="mini-batch k-means iterations")
    batch_per_cluster: int = Field(64, ge=1, description="embeddings per centroid in each mini-batch")
    sample_per_cluster: int = Field(32, ge=1, description="embeddings per centroid in the k-means++ sample")
    rows_per_task: int = Field(200_000, ge=1, description="embeddings a k-means or assignment task reads")
    seed: int = 0
