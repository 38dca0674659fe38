"""The pseudo-3D pieces added to a diffusers 2D UNet: ST-transformer blocks and temporal convolutions.

Both keep the module names of the 2D UNet untouched (the spatial weights of a diffusers checkpoint
load as they are) and add the temporal modules under names of their own, listed in
:data:`TEMPORAL_MODULE_NAMES`.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import TemporalConvLayer
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from cascade.errors import ModelConfigError
from cascade.models.attention import TemporalAttention
from cascade.models.layout import FrameLayout
from cascade.models.options import ArchitectureOptions

#: Key of the :class:`FrameLayout` in the ``cross_attention_kwargs`` that the UNet hands to
#: diffusers' ``Transformer2DModel``, which passes them on to each transformer block.
FRAME_LAYOUT_KWARG = "frame_layout"

#: Names of the temporal submodules; a parameter is temporal iff its key contains one of them
#: (``temp_resnet`` and ``temp_module``: :mod:`cascade.models.temporal_convs`).
TEMPORAL_MODULE_NAMES = ("norm_temp", "attn_temp", "temp_convs", "temp_resnet", "temp_module")


def is_temporal_key(key: str) -> bool:
    """Whether a state-dict key belongs to a temporal layer (absent from any 2D checkpoint)."""
    return any(part in TEMPORAL_MODULE_NAMES for part in key.split("."))


class SpatioTemporalTransformerBlock(nn.Module):
    """Stable Diffusion's transformer block with temporal self-attention (paper, Fig. 4b).

    Runs spatial self-attention, cross-attention, temporal self-attention over the video frames,
    then the feed-forward (or, with ``temporal_attention="after_ff"``, the feed-forward before the
    temporal attention), each pre-normed and residual. With ``sparse_causal_attention`` the
    spatial self-attention of each video frame takes its keys and values from frame 0 and the
    previous frame. It adopts the sub-modules of an existing
    :class:`~diffusers.models.attention.BasicTransformerBlock` under the same names, so state dicts
    of the 2D block load unchanged.
    """

    def __init__(self, block: BasicTransformerBlock, options: ArchitectureOptions) -> None:
        super().__init__()
        if block.norm_type != "layer_norm" or block.pos_embed is not None or hasattr(block, "fuser"):
            raise ModelConfigError(
                f"only Stable Diffusion transformer blocks (layer_norm, no positional embedding, no "
                f"GLIGEN) can be inflated; got norm_type={block.norm_type!r}"
            )
        self.only_cross_attention = block.only_cross_attention
        self.norm1, self.attn1 = block.norm1, block.attn1
        self.norm2, self.attn2 = block.norm2, block.attn2
        self.norm3, self.ff = block.norm3, block.ff
        self.temporal_after_ff = options.temporal_attention == "after_ff"
        self.sparse_causal = options.sparse_causal_attention and not block.only_cross_attention
        self.norm_temp = nn.LayerNorm(block.dim)
        self.attn_temp = TemporalAttention(
            block.dim, block.num_attention_heads, block.attention_head_dim, bias=block.attention_bias,
            rope=options.temporal_rope, relative_bias=options.temporal_relative_bias,
        )  # fmt: skip

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Same (positional) signature as ``BasicTransformerBlock``, which ``Transformer2DModel`` uses.

        ``timestep`` and ``class_labels`` only feed ada-norm variants, which are rejected at init.
        """
        layout: FrameLayout = cross_attention_kwargs[FRAME_LAYOUT_KWARG]
        normed = self.norm1(hidden_states)
        if self.only_cross_attention:
            self_context = encoder_hidden_states
        elif self.sparse_causal:
            self_context = _sparse_causal_context(normed, layout)
        else:
            self_context = None
        hidden_states = hidden_states + self.attn1(
            normed, encoder_hidden_states=self_context, attention_mask=attention_mask
        )
        if self.attn2 is not None:
            hidden_states = hidden_states + self.attn2(
                self.norm2(hidden_states),
                encoder_hidden_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
            )
        if self.temporal_after_ff:
            hidden_states = hidden_states + self.ff(self.norm3(hidden_states))
            return layout.map_video(hidden_states, self._temporal_attention)
        hidden_states = layout.map_video(hidden_states, self._temporal_attention)
        return hidden_states + self.ff(self.norm3(hidden_states))

    def _temporal_attention(self, video: torch.Tensor) -> torch.Tensor:
        """Residual temporal attention on ``(B, T, N, C)`` tokens, over T at each of the N positions."""
        batch, frames, tokens, channels = video.shape
        sequences = video.permute(0, 2, 1, 3).reshape(batch * tokens, frames, channels)
        sequences = sequences + self.attn_temp(self.norm_temp(sequences))
        return sequences.reshape(batch, tokens, frames, channels).permute(0, 2, 1, 3)


def _sparse_causal_context(frames: torch.Tensor, layout: FrameLayout) -> torch.Tensor:
    """``(B * F, N, C)`` normed tokens -> ``(B * F, 2N, C)``: for each frame, the tokens of the two
    frames it attends to (:meth:`FrameLayout.sparse_causal_sources`). The projections of
    self-attention are per token, so its keys and values of these are those of the two frames."""
    first, previous = layout.sparse_causal_sources()
    per_sample = frames.unflatten(0, (-1, layout.num_frames))
    return torch.cat([per_sample[:, first], per_sample[:, previous]], dim=2).flatten(0, 1)


def inflate_transformer_blocks(unet: UNet2DConditionModel, options: ArchitectureOptions) -> None:
    """Replace, in place, every transformer block of the UNet by its spatio-temporal version."""
    for module in list(unet.modules()):
        blocks = getattr(module, "transformer_blocks", None)
        if blocks is None:
            continue
        for index, block in enumerate(blocks):
            if not isinstance(block, BasicTransformerBlock):
                raise ModelConfigError(
                    f"cannot inflate transformer block of type {type(block).__name__}; "
                    "expected diffusers' BasicTransformerBlock"
                )
            blocks[index] = SpatioTemporalTransformerBlock(block, options)


def unet_blocks(unet: UNet2DConditionModel) -> list[nn.Module]:
    """Down blocks, the mid block, then up blocks: every block that owns ``resnets``."""
    return [*unet.down_blocks, unet.mid_block, *unet.up_blocks]


def add_temporal_convs(unet: UNet2DConditionModel) -> None:
    """Give every UNet block a ``temp_convs`` list, one temporal 3D conv stack after each resnet.

    Uses diffusers' ``TemporalConvLayer`` (ModelScope's: four GroupNorm-SiLU-Conv3d stages with a
    (3, 1, 1) kernel, the last zero-initialised, added residually), so the inflated UNet still
    reproduces the 2D one frame by frame.
    """
    groups = unet.config.norm_num_groups
    for block in unet_blocks(unet):
        block.temp_convs = nn.ModuleList(
            TemporalConvLayer(resnet.out_channels, norm_num_groups=groups) for resnet in block.resnets
        )
