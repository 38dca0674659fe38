"""Rotary position embedding over the frame index (paper, section 4.1; RoFormer / LLaMA).

Follows the convention of the LaVie release (``rotary_embedding_torch``): only the first
``min(32, head_dim)`` features of each head are rotated, in adjacent pairs ``(x0, x1), (x2, x3)...``,
with frequencies ``10000 ** (-2i / rope_dim)``; the remaining features pass through unchanged.
"""

from __future__ import annotations

import torch

ROPE_MAX_DIM = 32
ROPE_THETA = 10000.0


def rope_dim_for(head_dim: int, max_dim: int = ROPE_MAX_DIM) -> int:
    """Number of features rotated per head: ``min(max_dim, head_dim)`` rounded down to even.

    A head narrower than 32 rotates all its (even) features; a 1-wide head rotates none and its
    attention is then position-agnostic.
    """
    return min(max_dim, head_dim) // 2 * 2


def rope_frequencies(rope_dim: int, device: torch.device | None = None) -> torch.Tensor:
    """The ``rope_dim / 2`` angular frequencies ``1 / theta ** (2i / rope_dim)``, float32: pair ``i``
    turns by ``position * frequency[i]``. (The release stores them in each checkpoint as
    ``rotary_emb.freqs``; the importer checks those against these.)"""
    return 1.0 / ROPE_THETA ** (torch.arange(0, rope_dim, 2, device=device, dtype=torch.float32) / rope_dim)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, rope_dim: int) -> torch.Tensor:
    """Rotate the first ``rope_dim`` features of ``x`` (``(..., T, head_dim)``) by position.

    ``positions`` has shape ``(T,)``. The rotation is computed in float32 and cast back, so bf16
    inputs keep the angle precision. ``q_m . k_n`` after rotation depends only on ``m - n``.
    """
    if rope_dim == 0:
        return x
    angles = positions.to(device=x.device, dtype=torch.float32)[:, None] * rope_frequencies(rope_dim, x.device)
    cos, sin = angles.cos(), angles.sin()
    rotated, passed = x[..., :rope_dim], x[..., rope_dim:]
    pairs = rotated.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
    return torch.cat((rotated.to(x.dtype), passed), dim=-1)
