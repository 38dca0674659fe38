"""Temporal self-attention over frames: rotary position embedding on the frame index and, as an
option, a T5-style relative position bias."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cascade.models.rope import apply_rope, rope_dim_for

#: The relative position bias of the LaVie release: 32 buckets (16 per direction), distances up
#: to 32 frames told apart on a log scale.
RELATIVE_BIAS_BUCKETS = 32
RELATIVE_BIAS_MAX_DISTANCE = 32


def naive_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v, materialising the score matrix (the benchmark's baseline)."""
    scores = query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias
    return scores.float().softmax(dim=-1).to(value.dtype) @ value


def relative_position_buckets(
    num_frames: int,
    num_buckets: int = RELATIVE_BIAS_BUCKETS,
    max_distance: int = RELATIVE_BIAS_MAX_DISTANCE,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``(T, T)`` bucket of key frame ``j`` seen from query frame ``i`` (T5's bidirectional scheme).

    Keys at or before the query take buckets ``[0, num_buckets / 2)``, keys after it the upper half.
    Within a half, distances below a quarter of ``num_buckets`` have a bucket each; longer ones
    share buckets on a log scale up to ``max_distance``, and farther ones the last bucket. The log
    is taken in float32, as in the release, so that the bucket edges fall where its do.
    """
    positions = torch.arange(num_frames, device=device)
    offset = positions[:, None] - positions[None, :]  # > 0: the key is in the query's past
    half = num_buckets // 2
    exact = half // 2
    distance = offset.abs()
    scaled = torch.log(distance.clamp(min=exact).float() / exact) / math.log(max_distance / exact) * (half - exact)
    far = (exact + scaled.long()).clamp(max=half - 1)
    return (offset < 0).long() * half + torch.where(distance < exact, distance, far)


class TemporalAttention(nn.Module):
    """Multi-head self-attention along the frame axis of ``(N, T, C)`` sequences.

    ``N`` runs over (sample, spatial position) pairs, ``T`` over frames. With ``rope`` queries and
    keys are rotated on the frame index before ``scaled_dot_product_attention``; with
    ``relative_bias`` a learned per-head bias of the frames' relative position
    (:func:`relative_position_buckets`) is added to the logits. The output projection starts at
    zero, so a freshly inflated block is the identity on its residual stream.
    """

    def __init__(
        self, dim: int, heads: int, head_dim: int, bias: bool = False, *, rope: bool = True, relative_bias: bool = False
    ) -> None:
        super().__init__()
        inner_dim = heads * head_dim
        self.heads = heads
        self.rope_dim = rope_dim_for(head_dim) if rope else 0
        self.naive = False
        self.to_q = nn.Linear(dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(dim, inner_dim, bias=bias)
        self.to_out = nn.Linear(inner_dim, dim)
        self.rel_pos_bias = nn.Embedding(RELATIVE_BIAS_BUCKETS, heads) if relative_bias else None
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        num_frames = hidden_states.shape[1]
        positions = torch.arange(num_frames, device=hidden_states.device)
        query, key, value = (
            proj(hidden_states).unflatten(-1, (self.heads, -1)).transpose(1, 2)
            for proj in (self.to_q, self.to_k, self.to_v)
        )
        query = apply_rope(query, positions, self.rope_dim)
        key = apply_rope(key, positions, self.rope_dim)
        bias = None
        if self.rel_pos_bias is not None:  # (T, T, heads) -> (heads, T, T), broadcast over N
            buckets = relative_position_buckets(num_frames, device=hidden_states.device)
            bias = self.rel_pos_bias(buckets).permute(2, 0, 1).to(query.dtype)
        if self.naive:
            out = naive_attention(query, key, value, bias)
        else:
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        return self.to_out(out.transpose(1, 2).flatten(2))
