"""The temporal convolutions of the LaVie release's VSR model (option ``temporal_convs="lavie_vsr"``).

Two kinds of module, both on whole ``(B, C, T, H, W)`` videos (the image frames of a joint batch
pass them untouched) with GroupNorm statistics over all the video's frames:

* ``temp_resnet`` (:class:`TemporalResnet`, kernel 3 x 1 x 1, no time embedding) inside each
  spatial transformer, applied to its input before the transformer's norm, so the transformer's
  residual starts from its output;
* ``temp_module`` (:class:`VideoTemporalModule`) after each down block (after its downsampler,
  the skip connections already taken), after the mid block and after each up block (after its
  upsampler).

Their last convolutions start at zero, so a freshly built model still reproduces its 2D UNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from cascade.models.frame_norm import resnet_over_frames
from cascade.models.layout import batch_to_frames, frames_to_batch

#: The release builds these modules with GroupNorm eps 1e-6 whatever the UNet's ``norm_eps``.
TEMPORAL_NORM_EPS = 1e-6


class TemporalResnet(nn.Module):
    """GroupNorm-SiLU-Conv3d(k x 1 x 1), [+ time embedding], GroupNorm-SiLU-Conv3d(3 x 1 x 1), plus
    the input: a resnet that mixes frames only, at each pixel (zero padding in time)."""

    def __init__(self, channels: int, groups: int, kernel: int, temb_channels: int | None = None) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels, eps=TEMPORAL_NORM_EPS)
        self.conv1 = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0))
        self.time_emb_proj = nn.Linear(temb_channels, channels) if temb_channels else None
        self.norm2 = nn.GroupNorm(groups, channels, eps=TEMPORAL_NORM_EPS)
        self.conv2 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, video: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """``video``: ``(B, C, T, H, W)``; ``temb``: ``(B, temb_channels)`` when the block has a projection."""
        hidden = self.conv1(F.silu(self.norm1(video)))
        if self.time_emb_proj is not None:
            hidden = hidden + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        return video + self.conv2(F.silu(self.norm2(hidden)))


class VideoTemporalModule(nn.Module):
    """A temporal resnet (5 x 1 x 1 then 3 x 1 x 1, with the time embedding), a spatial resnet
    (GroupNorm over the video's frames), then a zero-initialised 1 x 1 ``shift_conv``, added to the
    input as a residual."""

    def __init__(self, channels: int, groups: int, temb_channels: int) -> None:
        super().__init__()
        self.temporal_resnet = TemporalResnet(channels, groups, kernel=5, temb_channels=temb_channels)
        self.spatial_resnet = ResnetBlock2D(
            in_channels=channels, temb_channels=temb_channels, groups=groups, eps=TEMPORAL_NORM_EPS
        )
        self.shift_conv = nn.Conv2d(channels, channels, kernel_size=1)
        nn.init.zeros_(self.shift_conv.weight)
        nn.init.zeros_(self.shift_conv.bias)

    def forward(self, video: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """``video``: ``(B, C, T, H, W)``; ``temb``: ``(B, temb_channels)``."""
        num_frames = video.shape[2]
        hidden = frames_to_batch(self.temporal_resnet(video, temb))
        hidden = resnet_over_frames(self.spatial_resnet, hidden, temb.repeat_interleave(num_frames, 0), num_frames)
        return video + batch_to_frames(self.shift_conv(hidden), num_frames)


def add_lavie_vsr_convs(unet: UNet2DConditionModel, blocks: list[nn.Module]) -> None:
    """Give every spatial transformer of the UNet a ``temp_resnet`` and each of ``blocks`` (down
    blocks, mid block, up blocks) a ``temp_module``."""
    groups = unet.config.norm_num_groups
    temb_channels = unet.time_embedding.linear_2.out_features
    for block in blocks:
        for attention in getattr(block, "attentions", None) or ():
            attention.temp_resnet = TemporalResnet(attention.in_channels, groups, kernel=3)
        block.temp_module = VideoTemporalModule(block.resnets[-1].out_channels, groups, temb_channels)
