"""Rotary position embedding on the frame index and the temporal attention built on it."""

from __future__ import annotations

import pytest
import torch

from cascade.models.attention import TemporalAttention, naive_attention
from cascade.models.rope import apply_rope, rope_dim_for


@pytest.mark.parametrize(("head_dim", "rotated"), [(160, 32), (40, 32), (32, 32), (8, 8), (5, 4), (1, 0)])
def test_rope_rotates_at_most_32_even_dims(head_dim, rotated):
    assert rope_dim_for(head_dim) == rotated


@pytest.mark.parametrize("head_dim", [8, 40])
def test_rope_is_relative(head_dim):
    """q_m . k_n depends on m - n only: shifting all frame indices leaves the scores unchanged."""
    generator = torch.Generator().manual_seed(0)
    query, key = torch.randn(2, 3, 16, head_dim, generator=generator).unbind(0)
    rope_dim = rope_dim_for(head_dim)
    positions = torch.arange(16)

    def scores(shift: int) -> torch.Tensor:
        q = apply_rope(query, positions + shift, rope_dim)
        k = apply_rope(key, positions + shift, rope_dim)
        return q @ k.transpose(-1, -2)

    # Rotation angles are computed in float32: exact up to float32 rounding of position * frequency.
    torch.testing.assert_close(scores(7), scores(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores(1000), scores(0), atol=1e-3, rtol=1e-3)
    # ...and positions do matter: the scores differ from the unrotated ones.
    assert not torch.allclose(scores(0), query @ key.transpose(-1, -2))


def test_rope_leaves_features_beyond_32_untouched_and_keeps_norms():
    x = torch.randn(4, 6, 48)
    rotated = apply_rope(x, torch.arange(6), rope_dim_for(48))
    assert torch.equal(rotated[..., 32:], x[..., 32:])
    assert torch.equal(rotated[:, 0], x[:, 0])  # position 0: rotation by angle 0
    torch.testing.assert_close(rotated[..., :32].norm(dim=-1), x[..., :32].norm(dim=-1))


def test_rope_keeps_bf16():
    x = torch.randn(2, 5, 8, dtype=torch.bfloat16)
    assert apply_rope(x, torch.arange(5), 8).dtype == torch.bfloat16


def test_temporal_attention_sdpa_matches_naive_and_is_position_aware():
    torch.manual_seed(0)
    attention = TemporalAttention(dim=16, heads=2, head_dim=8)
    torch.nn.init.normal_(attention.to_out.weight)
    x = torch.randn(3, 6, 16)
    sdpa = attention(x)
    attention.naive = True
    torch.testing.assert_close(attention(x), sdpa, atol=1e-5, rtol=1e-5)
    # Without RoPE, self-attention is permutation-equivariant over frames; with it, it is not.
    reversed_frames = attention(x.flip(1)).flip(1)
    assert not torch.allclose(reversed_frames, sdpa, atol=1e-4)


def test_naive_attention_is_softmax_qk_v():
    q, k, v = torch.randn(3, 2, 5, 4).unbind(0)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v
    torch.testing.assert_close(naive_attention(q, k, v), expected)
