"""Each architecture option of the release's models against a direct computation of what it means."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D

from cascade.models.attention import TemporalAttention, relative_position_buckets
from cascade.models.blocks import FRAME_LAYOUT_KWARG, SpatioTemporalTransformerBlock
from cascade.models.frame_norm import group_norm_over_frames, resnet_over_frames
from cascade.models.layout import FrameLayout, batch_to_frames, frames_to_batch
from cascade.models.options import ArchitectureOptions
from cascade.models.rope import apply_rope

# Bucket of a key `d` frames before the query (T5, 32 buckets, max distance 32): one bucket per
# distance below 8, then floor(8 + 4 * log2(d / 8)) capped at 15, worked out by hand.
PAST_BUCKETS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 12, 12, 13, 13, 13, 14, 14, 14, 14]
PAST_BUCKETS += [15] * (41 - len(PAST_BUCKETS))  # distances 27..40


def test_relative_position_buckets_match_hand_computed():
    buckets = relative_position_buckets(41)
    for distance, bucket in enumerate(PAST_BUCKETS):
        assert buckets[40, 40 - distance] == bucket, f"key {distance} frames before the query"
        assert buckets[0, distance] == (16 + bucket if distance else 0), f"key {distance} frames after the query"
    # Relative: the bucket depends on i - j only.
    assert torch.equal(buckets[1:, 1:], buckets[:-1, :-1])


def _random(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return module.eval()


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.unflatten(-1, (heads, -1)).transpose(-3, -2)  # (..., T, C) -> (..., heads, T, d)


def test_relative_bias_is_added_to_the_temporal_logits():
    heads, head_dim, frames = 2, 8, 12
    attention = _random(TemporalAttention(16, heads, head_dim, rope=False, relative_bias=True))
    x = torch.randn(3, frames, 16)
    q, k, v = (_heads(proj(x), heads) for proj in (attention.to_q, attention.to_k, attention.to_v))
    buckets = torch.tensor(
        [[PAST_BUCKETS[i - j] if i >= j else 16 + PAST_BUCKETS[j - i] for j in range(frames)] for i in range(frames)]
    )
    bias = attention.rel_pos_bias.weight[buckets].permute(2, 0, 1)  # (heads, T, T) from the (32, heads) table
    weights = (q @ k.transpose(-1, -2) / math.sqrt(head_dim) + bias).softmax(-1)
    expected = attention.to_out((weights @ v).transpose(-3, -2).flatten(-2))
    torch.testing.assert_close(attention(x), expected, atol=1e-5, rtol=1e-5)


def test_interleaved_rotary_matches_hand_written_rotation():
    """Pairs (0, 1), (2, 3)... of the first 32 of 40 features turn by position / 10000 ** (2i / 32)."""
    x = torch.randn(2, 6, 40, dtype=torch.float64)
    rotated = apply_rope(x.float(), torch.arange(6), 32).double()
    expected = x.clone()
    for position in range(6):
        for pair in range(16):
            angle = position / 10000 ** (2 * pair / 32)
            c, s = math.cos(angle), math.sin(angle)
            a, b = x[:, position, 2 * pair], x[:, position, 2 * pair + 1]
            expected[:, position, 2 * pair] = a * c - b * s
            expected[:, position, 2 * pair + 1] = a * s + b * c
    torch.testing.assert_close(rotated, expected, atol=1e-5, rtol=1e-5)


def test_frame_pooled_group_norm_is_group_norm_of_the_video():
    norm = _random(torch.nn.GroupNorm(4, 16, eps=1e-5))
    video = torch.randn(2, 16, 5, 6, 6) * 3 + torch.arange(5.0).view(1, 1, 5, 1, 1)  # frames differ in mean
    pooled = group_norm_over_frames(norm, frames_to_batch(video), num_frames=5)
    expected = F.group_norm(video, 4, norm.weight, norm.bias, 1e-5)
    torch.testing.assert_close(batch_to_frames(pooled, 5), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(pooled, norm(frames_to_batch(video)), atol=1e-3)  # not per frame


def test_frame_pooled_resnet_is_the_release_resnet_on_the_video():
    """GroupNorm over (C/groups, F, H, W), 3x3 convolutions per frame, time embedding per sample."""
    resnet = _random(ResnetBlock2D(in_channels=16, out_channels=16, temb_channels=8, groups=4, eps=1e-6))
    video, temb = torch.randn(2, 16, 4, 6, 6), torch.randn(2, 8)

    def norm(module: torch.nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        return F.silu(F.group_norm(x, module.num_groups, module.weight, module.bias, module.eps))

    def conv(module: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, module.weight.unsqueeze(2), module.bias, padding=(0, 1, 1))

    hidden = conv(resnet.conv1, norm(resnet.norm1, video)) + resnet.time_emb_proj(F.silu(temb))[..., None, None, None]
    expected = video + conv(resnet.conv2, norm(resnet.norm2, hidden))
    out = resnet_over_frames(resnet, frames_to_batch(video), temb.repeat_interleave(4, 0), num_frames=4)
    torch.testing.assert_close(batch_to_frames(out, 4), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("num_image_frames", [0, 1])
def test_sparse_causal_attention_matches_per_frame_loop(num_image_frames):
    """Video frame f attends to the tokens of frame 0 and frame max(f - 1, 0); images to themselves."""
    heads, head_dim, frames, tokens = 2, 8, 5, 4
    block = BasicTransformerBlock(16, heads, head_dim, cross_attention_dim=12)
    block = _random(SpatioTemporalTransformerBlock(block, ArchitectureOptions(sparse_causal_attention=True)))
    x, context = torch.randn(2 * frames, tokens, 16), torch.randn(2 * frames, 3, 12)
    captured = []
    block.attn1.register_forward_hook(lambda module, inputs, output: captured.append(output))
    layout = FrameLayout(frames, num_image_frames)
    block(x, encoder_hidden_states=context, cross_attention_kwargs={FRAME_LAYOUT_KWARG: layout})

    attn = block.attn1
    normed = block.norm1(x).unflatten(0, (2, frames))
    video_frames = frames - num_image_frames
    expected = torch.empty_like(normed)
    for sample in range(2):
        for frame in range(frames):
            sources = [0, max(frame - 1, 0)] if frame < video_frames else [frame]
            keys_from = torch.cat([normed[sample, f] for f in sources])
            q = _heads(attn.to_q(normed[sample, frame]), heads)
            k, v = _heads(attn.to_k(keys_from), heads), _heads(attn.to_v(keys_from), heads)
            weights = (q @ k.transpose(-1, -2) / math.sqrt(head_dim)).softmax(-1)
            expected[sample, frame] = attn.to_out[0]((weights @ v).transpose(0, 1).flatten(-2))
    torch.testing.assert_close(captured[0], expected.flatten(0, 1), atol=1e-5, rtol=1e-5)


def test_temporal_attention_after_feed_forward():
    """``after_ff``: x + attn1, + attn2, + ff, then + temporal attention over the frames."""
    heads, head_dim, frames, tokens = 2, 8, 4, 3
    block = BasicTransformerBlock(16, heads, head_dim, cross_attention_dim=12)
    options = ArchitectureOptions(temporal_attention="after_ff", temporal_rope=False)
    block = _random(SpatioTemporalTransformerBlock(block, options))
    x, context = torch.randn(frames, tokens, 16), torch.randn(frames, 3, 12)
    out = block(x, encoder_hidden_states=context, cross_attention_kwargs={FRAME_LAYOUT_KWARG: FrameLayout(frames)})

    hidden = x + block.attn1(block.norm1(x))
    hidden = hidden + block.attn2(block.norm2(hidden), encoder_hidden_states=context)
    hidden = hidden + block.ff(block.norm3(hidden))
    sequences = hidden.transpose(0, 1)  # (tokens, frames, C): attention over frames at each position
    expected = (sequences + block.attn_temp(block.norm_temp(sequences))).transpose(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
