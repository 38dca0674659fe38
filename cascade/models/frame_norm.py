"""GroupNorm with statistics pooled over the frames of each sample (option ``group_norm_over_frames``).

The spatial layers see a batch of ``B * F`` frames (:mod:`cascade.models.layout`). A frame-pooled
GroupNorm normalises each group of channels with one mean and variance over all ``F`` frames of a
sample, as a GroupNorm applied to the ``(B, C, F, H, W)`` video would: the release's resnets and
``conv_norm_out`` do so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from cascade.errors import ModelConfigError


def group_norm_over_frames(norm: nn.GroupNorm, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``norm`` applied to ``(B * F, C, H, W)`` frames with statistics over C/groups x F x H x W."""
    video = frames.unflatten(0, (-1, num_frames)).transpose(1, 2)
    out = F.group_norm(video, norm.num_groups, norm.weight, norm.bias, norm.eps)
    return out.transpose(1, 2).flatten(0, 1)


def check_poolable(resnet: ResnetBlock2D) -> None:
    """:func:`resnet_over_frames` implements the plain resnet of the SD and x4-upscaler UNets only."""
    if resnet.upsample is not None or resnet.downsample is not None or resnet.time_embedding_norm != "default":
        raise ModelConfigError(
            "group_norm_over_frames needs plain resnets (no up/down-sampling resnets, resnet_time_scale_shift "
            f"'default'), got time_embedding_norm={resnet.time_embedding_norm!r}"
        )
    if resnet.skip_time_act:
        raise ModelConfigError("group_norm_over_frames does not support resnet_skip_time_act")


def resnet_over_frames(
    resnet: ResnetBlock2D, frames: torch.Tensor, temb: torch.Tensor | None, num_frames: int
) -> torch.Tensor:
    """``resnet(frames, temb)`` with both of its GroupNorms pooled over the frames of each sample.

    The resnet's own modules in the order of diffusers' ``ResnetBlock2D.forward`` for the
    configurations :func:`check_poolable` admits: with ``num_frames == 1`` this is that forward.
    """
    hidden = resnet.conv1(resnet.nonlinearity(group_norm_over_frames(resnet.norm1, frames, num_frames)))
    if resnet.time_emb_proj is not None and temb is not None:
        hidden = hidden + resnet.time_emb_proj(resnet.nonlinearity(temb))[:, :, None, None]
    hidden = resnet.nonlinearity(group_norm_over_frames(resnet.norm2, hidden, num_frames))
    hidden = resnet.conv2(resnet.dropout(hidden))
    shortcut = resnet.conv_shortcut(frames) if resnet.conv_shortcut is not None else frames
    return (shortcut + hidden) / resnet.output_scale_factor
