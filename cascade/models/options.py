"""Architecture options of the 3D UNets, saved in ``config.json`` beside the 2D UNet's keys.

The 3D models take the config of the diffusers 2D UNet they inflate, plus these keyword options.
Each picks one variant of a pseudo-3D design choice; the defaults are this project's design, and
the published LaVie checkpoints (:mod:`cascade.models.release`) are other settings of the same
options, not other classes:

``group_norm_over_frames`` (default ``False``)
    ``False``: the GroupNorms of the resnets and of ``conv_norm_out`` normalise each frame on its
    own, so images in a joint image-video batch stay independent of the video and an inflated
    model reproduces its 2D UNet frame by frame. ``True``: their statistics are pooled over all the
    frames of a sample (C/groups x F x H x W), as in the release. The transformers' input
    GroupNorm stays per frame in both.
``temporal_rope`` (default ``True``)
    Rotary position embedding on the frame index in temporal attention (:mod:`cascade.models.rope`:
    interleaved pairs on the first min(32, head_dim) channels of each head, theta = 10000, the
    release's convention too). ``False``: no position encoding (the release's interpolation model).
``temporal_relative_bias`` (default ``False``)
    A T5-style bidirectional relative position bias (32 buckets, max distance 32, a learned
    ``[32, heads]`` table per temporal attention) added to the temporal attention logits, beside
    the rotary embedding (the release's base and VSR models).
``temporal_attention`` (default ``"before_ff"``)
    Where temporal self-attention sits in each transformer block: ``"before_ff"`` (after the
    cross-attention, before the feed-forward) or ``"after_ff"`` (after the feed-forward, the
    release's interpolation model).
``sparse_causal_attention`` (default ``False``)
    Spatial self-attention in which each video frame takes its keys and values from frame 0 and
    from the frame before it (frame 0 from itself), the release's interpolation model. Image frames
    attend to themselves.
``temporal_convs`` (default ``"none"``; ``VSRUNet3DModel``: ``"after_resnets"``)
    Temporal convolutions: ``"none"``; ``"after_resnets"``: a zero-initialised stack of (3, 1, 1)
    convolutions after every resnet (ModelScope's ``TemporalConvLayer``); ``"lavie_vsr"``: the
    release's VSR layout, a temporal-conv resnet inside each spatial transformer before its norm
    and a temporal module after each down block, the mid block and each up block
    (:mod:`cascade.models.temporal_convs`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from cascade.errors import ModelConfigError

TEMPORAL_ATTENTION_PLACEMENTS = ("before_ff", "after_ff")
TEMPORAL_CONVS = ("none", "after_resnets", "lavie_vsr")


@dataclass(frozen=True)
class ArchitectureOptions:
    """One value per option (see the module docstring); validated on construction."""

    group_norm_over_frames: bool = False
    temporal_rope: bool = True
    temporal_relative_bias: bool = False
    temporal_attention: str = "before_ff"
    sparse_causal_attention: bool = False
    temporal_convs: str = "none"

    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "temporal_attention": TEMPORAL_ATTENTION_PLACEMENTS,
        "temporal_convs": TEMPORAL_CONVS,
    }

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            choices = self._CHOICES.get(field.name)
            if choices is None and not isinstance(value, bool):
                raise ModelConfigError(f"config option {field.name} must be true or false, got {value!r}")
            if choices is not None and value not in choices:
                raise ModelConfigError(f"config option {field.name}={value!r} is not one of {', '.join(choices)}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any], defaults: ArchitectureOptions) -> ArchitectureOptions:
        """Take the options out of a model's init keywords; absent or ``None`` ones keep ``defaults``."""
        given = {name: kwargs.pop(name) for name in cls.names() if name in kwargs}
        return dataclasses.replace(defaults, **{name: value for name, value in given.items() if value is not None})

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def signature_with_options(init: Callable[..., Any]) -> inspect.Signature:
    """``init``'s signature plus the options as keyword-only parameters (default ``None``: the
    model class's default).

    diffusers' ``ConfigMixin.from_config`` passes a config key to ``__init__`` only when the
    signature names it, so this is what lets ``config.json`` carry the options.
    """
    signature = inspect.signature(init)
    options = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in ArchitectureOptions.names()
    ]
    return signature.replace(parameters=[*signature.parameters.values(), *options])
