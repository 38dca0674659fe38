"""The base text-to-video model: Stable Diffusion's UNet made pseudo-3D (paper, section 4.1).

The model *is* a diffusers ``UNet2DConditionModel`` (same constructor, config and parameter names)
whose transformer blocks are swapped for spatio-temporal ones. Its forward walks the diffusers
blocks itself so that the frame layout reaches the temporal layers explicitly: resnets, spatial
attention, down- and up-samplers run per frame on ``(B * F, C, H, W)``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.utils import BaseOutput
from torch import nn

from cascade.errors import InputShapeError, ModelConfigError
from cascade.models import inflate, registry
from cascade.models.attention import TemporalAttention
from cascade.models.blocks import (
    FRAME_LAYOUT_KWARG,
    add_temporal_convs,
    inflate_transformer_blocks,
    is_temporal_key,
    unet_blocks,
)
from cascade.models.frame_norm import check_poolable, group_norm_over_frames, resnet_over_frames
from cascade.models.layout import FrameLayout, batch_to_frames, frames_to_batch
from cascade.models.options import ArchitectureOptions, signature_with_options
from cascade.models.temporal_convs import add_lavie_vsr_convs

_SUPPORTED_BLOCKS = {
    "down_block_types": {"CrossAttnDownBlock2D", "DownBlock2D"},
    "up_block_types": {"CrossAttnUpBlock2D", "UpBlock2D"},
    "mid_block_type": {"UNetMidBlock2DCrossAttn"},
}
# Options of UNet2DConditionModel that the SD 1.x/2.x and x4-upscaler UNets leave at these values
# and that the 3D forward does not implement.
_REQUIRED_DEFAULTS = {
    "addition_embed_type": None,
    "encoder_hid_dim_type": None,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "class_embeddings_concat": False,
    "center_input_sample": False,
    "dual_cross_attention": False,
    "attention_type": "default",
}


@dataclass
class UNet3DModelOutput(BaseOutput):
    """``sample``: the model output, ``(B, out_channels, F, H, W)``."""

    sample: torch.Tensor


def _check_supported(config: Any) -> None:
    for option, allowed in _SUPPORTED_BLOCKS.items():
        values = config[option] if isinstance(config[option], list | tuple) else [config[option]]
        for value in values:
            if value not in allowed:
                raise ModelConfigError(f"{option} contains {value!r}; supported: {sorted(allowed)}")
    for option, default in _REQUIRED_DEFAULTS.items():
        if config[option] != default:
            raise ModelConfigError(f"config option {option}={config[option]!r} is not supported (need {default!r})")


@registry.register
class BaseUNet3DModel(UNet2DConditionModel):
    """The cascade's base (text-to-video) model: the Stable Diffusion UNet made pseudo-3D, built
    from a diffusers ``UNet2DConditionModel`` config. (Named apart from diffusers'
    ``UNet3DConditionModel``, a different architecture; folders saved under that old name load.)

    Every transformer block gains temporal self-attention with RoPE over the frame index, placed
    after cross-attention and before the feed-forward, its output projection zero-initialised:
    a freshly inflated model reproduces the 2D UNet applied frame by frame.

    Besides the 2D UNet's config, the constructor takes the architecture options of
    :mod:`cascade.models.options` (saved in ``config.json``; unset ones take the class's
    :attr:`default_options`).
    """

    default_options: ClassVar[ArchitectureOptions] = ArchitectureOptions()
    _no_split_modules: ClassVar[list[str]] = [
        "SpatioTemporalTransformerBlock", "ResnetBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"
    ]  # fmt: skip
    _repeated_blocks: ClassVar[list[str]] = ["SpatioTemporalTransformerBlock"]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registry.register(cls)  # every variant loads by the name its folders record

    @functools.wraps(UNet2DConditionModel.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The signature ConfigMixin.from_config sees is UNet2DConditionModel's plus the options
        # (``__signature__`` below), so config.json keys of both reach this constructor.
        options = ArchitectureOptions.pop_from(kwargs, type(self).default_options)
        super().__init__(*args, **kwargs)
        self.register_to_config(**options.to_config())
        self.architecture = options
        _check_supported(self.config)
        self._check_variant_config()
        inflate_transformer_blocks(self, options)
        if options.group_norm_over_frames:
            for block in unet_blocks(self):
                for resnet in block.resnets:
                    check_poolable(resnet)
        if options.temporal_convs == "after_resnets":
            add_temporal_convs(self)
        elif options.temporal_convs == "lavie_vsr":
            add_lavie_vsr_convs(self, unet_blocks(self))
        self.gradient_checkpointing = False

    __init__.__signature__ = signature_with_options(UNet2DConditionModel.__init__)

    def _expected_condition_channels(self) -> int | None:
        """Channels ``added_cond`` must have in this variant; ``None``: whatever the config says."""
        return None

    def _check_variant_config(self) -> None:
        expected = self._expected_condition_channels()
        if expected is not None and self.num_condition_channels != expected:
            out = self.config.out_channels
            raise ModelConfigError(
                f"{type(self).__name__} needs in_channels = {out} latent + {expected} condition = "
                f"{out + expected}, the config has {self.config.in_channels}"
            )

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained_2d(
        cls,
        path: str | os.PathLike,
        *,
        config: str | os.PathLike | dict[str, Any] | None = None,
        torch_dtype: torch.dtype | None = None,
        strict: bool = True,
        output_loading_info: bool = False,
    ) -> BaseUNet3DModel | tuple[BaseUNet3DModel, inflate.LoadingInfo]:
        """Inflate a 2D UNet: a diffusers UNet folder (or a pipeline folder with ``unet/``), or a
        single-file LDM checkpoint (``.safetensors``/``.ckpt``; ``config`` defaults to SD 1.x's).

        Temporal layers are newly initialised; any other missing key, an unexpected key (unless
        ``strict=False``) or a shape mismatch raises :class:`~cascade.errors.ModelLoadError`.
        """
        model, info = inflate.load_2d(cls, path, config=config, strict=strict)
        return _loaded(model, info, torch_dtype, output_loading_info)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        torch_dtype: torch.dtype | None = None,
        output_loading_info: bool = False,
    ) -> BaseUNet3DModel | tuple[BaseUNet3DModel, inflate.LoadingInfo]:
        """Load a folder written by :meth:`save_pretrained` (``config.json`` + safetensors), strictly."""
        model, info = inflate.load_3d(cls, path)
        return _loaded(model, info, torch_dtype, output_loading_info)

    # ------------------------------------------------------------------ utilities
    def temporal_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the temporal layers (temporal attention, its norm, temporal convs)."""
        return (param for name, param in self.named_parameters() if is_temporal_key(name))

    @property
    def num_condition_channels(self) -> int:
        """Input channels beyond the latent ones, expected in ``added_cond`` (0 for the base model)."""
        return self.config.in_channels - self.config.out_channels

    def set_attention_implementation(self, implementation: Literal["sdpa", "naive"]) -> None:
        """``"sdpa"`` (default): ``scaled_dot_product_attention`` everywhere; ``"naive"``: explicit
        softmax(QK^T)V for spatial and temporal attention (a baseline for benchmarks)."""
        if implementation not in ("sdpa", "naive"):
            raise ValueError(f"attention implementation must be 'sdpa' or 'naive', got {implementation!r}")
        naive = implementation == "naive"
        self.set_attn_processor(AttnProcessor() if naive else AttnProcessor2_0())
        for module in self.modules():
            if isinstance(module, TemporalAttention):
                module.naive = naive

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        num_image_frames: int = 0,
        added_cond: torch.Tensor | None = None,
        return_dict: bool = True,
        *,
        class_labels: torch.Tensor | None = None,
    ) -> UNet3DModelOutput | tuple[torch.Tensor]:
        """Denoise a ``(B, C, F, H, W)`` sample whose last ``num_image_frames`` frames are images.

        Args:
            timestep: a scalar or ``(B,)``, shared by the frames of a sample.
            encoder_hidden_states: ``(B, L, D)``, one caption for all frames, or ``(B, F, L, D)``,
                one per frame (video frames share the video caption, each image has its own).
            added_cond: ``(B, num_condition_channels, F, H, W)``, concatenated to ``sample`` on the
                channel axis (interpolation / long-video latents, the VSR low-res video).
            class_labels: ``(B,)`` class labels, e.g. the VSR noise level.
        """
        sample = self._with_condition(sample, added_cond)
        batch, _, num_frames, _, _ = sample.shape
        layout = FrameLayout(num_frames, num_image_frames).validate()
        hidden = frames_to_batch(sample)
        context = _per_frame_context(encoder_hidden_states, batch, num_frames)

        emb = self.time_embedding(
            self.get_time_embed(sample=hidden, timestep=_per_frame(timestep, "timestep", batch, num_frames))
        )
        class_emb = self.get_class_embed(
            sample=hidden, class_labels=_per_frame(class_labels, "class_labels", batch, num_frames)
        )
        if class_emb is not None:
            emb = emb + class_emb

        hidden = self.conv_in(hidden)
        skips = [hidden]
        for block in self.down_blocks:
            for index in range(len(block.resnets)):
                hidden = self._block_layer(block, index, hidden, emb, context, layout)
                skips.append(hidden)
            if block.downsamplers is not None:
                for downsampler in block.downsamplers:
                    hidden = downsampler(hidden)
                skips.append(hidden)
            hidden = self._temporal_module(block, hidden, emb, layout)

        hidden = self._resnet(self.mid_block, 0, hidden, emb, layout)
        for index in range(len(self.mid_block.attentions)):
            hidden = self._attention(self.mid_block, index, hidden, context, layout)
            hidden = self._resnet(self.mid_block, index + 1, hidden, emb, layout)
        hidden = self._temporal_module(self.mid_block, hidden, emb, layout)

        for block in self.up_blocks:
            for index in range(len(block.resnets)):
                hidden = torch.cat([hidden, skips.pop()], dim=1)
                hidden = self._block_layer(block, index, hidden, emb, context, layout)
            if block.upsamplers is not None:
                for upsampler in block.upsamplers:
                    hidden = upsampler(hidden, skips[-1].shape[2:])
            hidden = self._temporal_module(block, hidden, emb, layout)

        if self.conv_norm_out is not None:
            if self.architecture.group_norm_over_frames:
                hidden = group_norm_over_frames(self.conv_norm_out, hidden, num_frames)
            else:
                hidden = self.conv_norm_out(hidden)
            hidden = self.conv_act(hidden)
        out = batch_to_frames(self.conv_out(hidden), num_frames)
        return UNet3DModelOutput(sample=out) if return_dict else (out,)

    def _with_condition(self, sample: torch.Tensor, added_cond: torch.Tensor | None) -> torch.Tensor:
        if sample.ndim != 5:
            raise InputShapeError(
                f"sample must be 5-d (B, C, F, H, W), got {sample.ndim}-d of shape {tuple(sample.shape)}"
            )
        if added_cond is not None:
            if added_cond.shape[:1] + added_cond.shape[2:] != sample.shape[:1] + sample.shape[2:]:
                raise InputShapeError(
                    f"added_cond of shape {tuple(added_cond.shape)} does not match sample of shape "
                    f"{tuple(sample.shape)} outside the channel axis"
                )
            sample = torch.cat([sample, added_cond.to(sample.dtype)], dim=1)
        if sample.shape[1] != self.config.in_channels:
            raise InputShapeError(
                f"{type(self).__name__} takes {self.config.out_channels} latent + "
                f"{self.num_condition_channels} added_cond channels, got {sample.shape[1]} in total"
            )
        return sample

    def _block_layer(
        self,
        block: nn.Module,
        index: int,
        hidden: torch.Tensor,
        emb: torch.Tensor,
        context: torch.Tensor,
        layout: FrameLayout,
    ) -> torch.Tensor:
        """Resnet ``index`` of a down/up block, then its attention when the block has one."""
        hidden = self._resnet(block, index, hidden, emb, layout)
        if getattr(block, "attentions", None) is not None:
            hidden = self._attention(block, index, hidden, context, layout)
        return hidden

    def _resnet(
        self, block: nn.Module, index: int, hidden: torch.Tensor, emb: torch.Tensor, layout: FrameLayout
    ) -> torch.Tensor:
        """Resnet ``index`` of a block, then its temporal conv stack (VSR), checkpointed together."""
        return self._checkpointed(functools.partial(self._resnet_layer, block, index, layout), hidden, emb)

    def _resnet_layer(
        self, block: nn.Module, index: int, layout: FrameLayout, hidden: torch.Tensor, emb: torch.Tensor
    ) -> torch.Tensor:
        resnet = block.resnets[index]
        if self.architecture.group_norm_over_frames:
            hidden = resnet_over_frames(resnet, hidden, emb, layout.num_frames)
        else:
            hidden = resnet(hidden, emb)
        if self.architecture.temporal_convs == "after_resnets":
            conv = block.temp_convs[index]
            hidden = layout.map_video(
                hidden, lambda video: conv(video.flatten(0, 1), video.shape[1]).unflatten(0, video.shape[:2])
            )
        return hidden

    def _attention(
        self, block: nn.Module, index: int, hidden: torch.Tensor, context: torch.Tensor, layout: FrameLayout
    ) -> torch.Tensor:
        attention = block.attentions[index]
        if self.architecture.temporal_convs == "lavie_vsr":  # its temporal resnet runs before its norm
            hidden = self._checkpointed(functools.partial(_on_videos, attention.temp_resnet, layout), hidden)
        # Transformer2DModel checkpoints its blocks itself when gradient checkpointing is on.
        return attention(
            hidden,
            encoder_hidden_states=context,
            cross_attention_kwargs={FRAME_LAYOUT_KWARG: layout},
            return_dict=False,
        )[0]

    def _temporal_module(
        self, block: nn.Module, hidden: torch.Tensor, emb: torch.Tensor, layout: FrameLayout
    ) -> torch.Tensor:
        """The block's ``temp_module`` (``temporal_convs="lavie_vsr"``) on the video frames."""
        if self.architecture.temporal_convs != "lavie_vsr":
            return hidden
        temb = emb[:: layout.num_frames]  # (B, C): the frames of a sample share their embedding
        return self._checkpointed(functools.partial(_on_videos, block.temp_module, layout), hidden, temb)

    def _checkpointed(self, layer: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(layer, *inputs)
        return layer(*inputs)


def _loaded(
    model: BaseUNet3DModel, info: inflate.LoadingInfo, torch_dtype: torch.dtype | None, with_info: bool
) -> BaseUNet3DModel | tuple[BaseUNet3DModel, inflate.LoadingInfo]:
    model = model.to(torch_dtype) if torch_dtype is not None else model
    return (model, info) if with_info else model


def _on_videos(module: nn.Module, layout: FrameLayout, frames: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
    """A module of ``(B, C, T, H, W)`` videos applied to the video frames of ``(B * F, C, H, W)`` frames."""
    return layout.map_video(frames, lambda video: module(video.transpose(1, 2), *args).transpose(1, 2))


def _per_frame(value: Any, name: str, batch: int, num_frames: int) -> Any:
    """Repeat a per-sample ``(B,)`` tensor for each frame; scalars and ``None`` pass through."""
    if not torch.is_tensor(value) or value.ndim == 0:
        return value
    if value.shape != (batch,):
        raise InputShapeError(f"{name} must be a scalar or of shape ({batch},), got {tuple(value.shape)}")
    return value.repeat_interleave(num_frames)


def _per_frame_context(context: torch.Tensor, batch: int, num_frames: int) -> torch.Tensor:
    """``(B, L, D)`` or ``(B, F, L, D)`` text embeddings -> ``(B * F, L, D)``."""
    if context.ndim == 3 and context.shape[0] == batch:
        return context.repeat_interleave(num_frames, dim=0)
    if context.ndim == 4 and context.shape[:2] == (batch, num_frames):
        return context.flatten(0, 1)
    raise InputShapeError(
        f"encoder_hidden_states must be ({batch}, L, D) or ({batch}, {num_frames}, L, D), "
        f"got {tuple(context.shape)}"
    )
