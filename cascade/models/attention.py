"""Temporal self-attention over frames with rotary position embedding on the frame index."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cascade.models.rope import apply_rope, rope_dim_for


def naive_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, materialising the score matrix (the benchmark's baseline)."""
    scores = query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5
    return scores.float().softmax(dim=-1).to(value.dtype) @ value


class TemporalAttention(nn.Module):
    """Multi-head self-attention along the frame axis of ``(N, T, C)`` sequences.

    ``N`` runs over (sample, spatial position) pairs, ``T`` over frames. Queries and keys are
    rotated with RoPE on the frame index before ``scaled_dot_product_attention``. The output
    projection starts at zero, so a freshly inflated block is the identity on its residual stream.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, bias: bool = False) -> None:
        super().__init__()
        inner_dim = heads * head_dim
        self.heads = heads
        self.rope_dim = rope_dim_for(head_dim)
        self.naive = False
        self.to_q = nn.Linear(dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(dim, inner_dim, bias=bias)
        self.to_out = nn.Linear(inner_dim, dim)
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
        attend = naive_attention if self.naive else F.scaled_dot_product_attention
        out = attend(query, key, value)
        return self.to_out(out.transpose(1, 2).flatten(2))
